"""Moved: preparing the data is colorize/prepared_data.py, running a fit colorize/fit_run.py.

A compatibility path only, for the modules that still import it here (cli/local.py,
distributed.py, tune/service.py, tests/conftest.py); it goes once they import the two.
"""

from colorize.fit_run import RESULT_ROWS, finalize, run_fit
from colorize.prepared_data import PreparedData, prepare_data
from colorize.prepared_data import refuse_overlap as _refuse_overlap

__all__ = ["RESULT_ROWS", "PreparedData", "_refuse_overlap", "finalize", "prepare_data", "run_fit"]
