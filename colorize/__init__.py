"""colorize: automatic image colorization with a U-Net on the Lab colour space, on Ray.

Installed, the package holds its subpackages `colorize.tune` (the search service) and
`colorize.serve` (the Serve application); the repository keeps them as the top-level
folders tune/ and serve/ (pyproject.toml's package-dir maps them). From a source tree
that is not installed (a clone on PYTHONPATH, or the tree `colorize submit` ships to a
cluster as the job's working_dir) the same names resolve to those folders through the
package path below, so every process imports them as `colorize.tune` and `colorize.serve`.
"""

import os as _os

__version__ = "0.1.0"

_here = _os.path.dirname(_os.path.abspath(__file__))
_tree = _os.path.dirname(_here)
if not _os.path.isdir(_os.path.join(_here, "tune")) and all(  # a source tree, not a wheel
    _os.path.isfile(_os.path.join(_tree, name, "__init__.py")) for name in ("tune", "serve")
) and _os.path.isfile(_os.path.join(_tree, "pyproject.toml")):
    __path__.append(_tree)  # colorize.tune -> tune/, colorize.serve -> serve/
