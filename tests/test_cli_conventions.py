"""Command-line conventions of `colorize` (no model, no Ray): exit codes (2 usage, 1 runtime),
--version, submit's own options before the command, `jobs serve --delete`, one-line HTTP
errors from a cluster, and help text for every flag in one style."""

from __future__ import annotations

import argparse
import http.server
import json
import threading

import pytest

import colorize
from colorize.cli import build_parser, main
from colorize.cli.jobs import split_job
from colorize.distributed import serve_submit
from colorize.errors import ColorizeError, UsageError, usage_errors


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("colorize: error: ") and "\n" not in err, err
    assert "Traceback" not in err
    return err


# --- exit codes ---------------------------------------------------------------------------


def test_runtime_errors_exit_1_usage_errors_2():
    assert ColorizeError("a file is missing").exit_code == 1
    assert UsageError("--folds must be at least 2").exit_code == 2
    assert ColorizeError("bad option", usage=True).exit_code == 2
    with pytest.raises(ColorizeError) as info, usage_errors():
        raise ColorizeError("zoom must be in [1, 2]")
    assert info.value.exit_code == 2 and info.value.status == 400


@pytest.mark.parametrize("argv, words, code", [
    (["train", "--from", "{tmp}", "--config", "seed"], "not both", 2),
    (["train", "--config", "seed"], "--data is required", 2),
    (["tune", "--data", "sample", "--name", "x", "--folds", "1"], "--folds must be at least 2", 2),
    (["tune", "--data", "sample"], "--name is required", 2),
    (["serve", "{tmp}/m", "--replicas", "4-1"], "--replicas 4-1", 2),
    (["serve", "{tmp}/m", "--ingress", "direct", "--address", "auto"], "--ingress direct needs", 2),
    (["serve", "{tmp}/m"], "model not found", 1),
    (["fit", "--data", "sample", "--out", "{tmp}/o", "--zoom", "3"], "zoom must be in [1, 2]", 2),
    (["fit", "--data", "sample", "--test-data", "sample", "--out", "{tmp}/o"], "overlaps", 2),
    (["fit", "--data", "{tmp}/none", "--out", "{tmp}/o"], "data folder not found", 1),
    (["cluster", "status", "--dir", "{tmp}"], "no local cluster recorded", 1),
    (["jobs", "list"], "no cluster address", 2),
    (["jobs", "list", "--address", "ray://127.0.0.1:10001"], "is a Ray Client address", 2),
])
def test_each_error_exits_with_its_kind(tmp_path, capsys, monkeypatch, argv, words, code):
    for name in ("RAY_API_SERVER_ADDRESS", "RAY_ADDRESS"):
        monkeypatch.delenv(name, raising=False)
    assert main([a.format(tmp=tmp_path) for a in argv]) == code
    assert words in one_line_error(capsys)


@pytest.mark.parametrize("argv", [
    ["train", "--workers", "0"], ["predict", "m", "x.png", "--out", "o", "--batch-size", "0"],
    ["fit", "--global-context", "maybe"], ["cluster", "sideways"], ["--no-such-flag"],
])
def test_argparse_refusals_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2


@pytest.mark.parametrize("argv, unknown", [
    (["tune", "--data", "sample", "--name", "x", "--out", "4"], "--out"),  # not --output-stride
    (["fit", "--data", "sample", "--out", "o", "--epoch", "3"], "--epoch"),
    (["predict", "m", "x.png", "--out", "o", "--batch", "4"], "--batch"),
    (["submit", "--address", "http://127.0.0.1:1", "serve", "m", "--route", "/x"], "--route"),
])
def test_an_abbreviated_option_is_unknown_not_taken_for_another(argv, unknown, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert f"unrecognized arguments: {unknown}" in capsys.readouterr().err


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"colorize {colorize.__version__}"


# --- submit: its own options before the command -------------------------------------------


def test_submit_options_go_before_the_command():
    args = build_parser().parse_args(["submit", "--follow", "--no-ship", "--job-id", "j1",
                                      "tune", "--data", "sample", "--name", "x"])
    assert (args.follow, args.no_ship, args.job_id) == (True, True, "j1")
    assert split_job(args.job) == ("tune", ["--data", "sample", "--name", "x"])
    assert split_job(["train", "--address", "auto"]) == ("train", ["--address", "auto"])  # its own
    assert split_job(["--", "fit", "--epochs", "2"]) == ("fit", ["--epochs", "2"])


def test_a_double_dash_after_the_command_passes_the_rest_as_written():
    assert split_job(["tune", "--", "--name", "--follow"]) == ("tune", ["--name", "--follow"])
    # a later `--` is the command's own, and after it nothing is submit's
    assert split_job(["fit", "--data", "x", "--", "--follow"]) == \
        ("fit", ["--data", "x", "--", "--follow"])


@pytest.mark.parametrize("argv, option, shown", [
    (["tune", "--data", "sample", "--follow"], "--follow", "--follow tune"),
    (["train", "--no-ship", "--from", "e"], "--no-ship", "--no-ship train"),
    (["fit", "--job-id=j2"], "--job-id", "--job-id ID fit"),
    (["serve", "m", "--token-file", "t"], "--token-file", "--token-file FILE serve"),
    (["fit", "--data", "x", "--address", "http://h:8265"], "--address", "--address URL fit"),
])
def test_a_misplaced_submit_option_is_refused_in_one_line(argv, option, shown, capsys):
    assert main(["submit", *argv]) == 2
    err = one_line_error(capsys)
    assert f"{option} is an option of `colorize submit`" in err
    assert f"put it before the command (colorize submit {shown} ...)" in err


@pytest.mark.parametrize("argv, words", [
    ([], "give the command to submit"),
    (["evaluate", "m"], "cannot submit 'evaluate'"),
])
def test_submit_without_a_submittable_command(argv, words, capsys):
    assert main(["submit", *argv]) == 2
    assert words in one_line_error(capsys)


def test_submit_serve_refuses_a_bad_setting_before_connecting(capsys, monkeypatch):
    monkeypatch.delenv("RAY_API_SERVER_ADDRESS", raising=False)
    assert main(["submit", "serve", "m", "--replicas", "0-2"]) == 2
    assert "--replicas 0-2" in one_line_error(capsys)
    assert main(["submit", "serve", "m", "--dashboard-port", "1"]) == 2
    assert "is not for `submit serve`" in one_line_error(capsys)


def test_submit_serve_help_lists_the_deployment_options(capsys):
    with pytest.raises(SystemExit):
        main(["submit", "serve", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for flag in ("--replicas", "--name NAME", "--route-prefix", "--upscale-delay-s",
                 "--timeout-s", "jobs serve --delete NAME"):
        assert flag in text


# --- jobs serve --delete -------------------------------------------------------------------


@pytest.mark.parametrize("argv, words", [
    (["jobs", "list", "--delete", "x"], "--delete goes with `colorize jobs serve APP`"),
    (["jobs", "status", "j", "--follow"], "--follow goes with `colorize jobs logs JOB`"),
    (["jobs", "serve", "a", "--delete", "b"], "give one application"),
])
def test_jobs_option_misuse_is_a_usage_error(argv, words, capsys):
    assert main(argv) == 2
    assert words in one_line_error(capsys)


class FakeServe:
    """The slice of Ray's ServeSubmissionClient that serve_submit uses: Serve's REST API as
    `get_serve_details`, `deploy_applications` (PUT) and `delete_applications` (DELETE)."""

    def __init__(self, *apps, imperative=()):
        self.apps = {name: self._app(name, name not in imperative) for name in apps}
        self.put, self.deleted = [], False

    @staticmethod
    def _app(name, declarative):
        config = {"name": name, "route_prefix": f"/{name}", "import_path": "serve.app:app",
                  "args": {"model_dir": f"/m/{name}"}}
        return {"name": name, "status": "RUNNING", "route_prefix": f"/{name}",
                "source": "declarative" if declarative else "imperative",
                "deployed_app_config": config if declarative else None, "deployments": {}}

    def get_serve_details(self):
        return {"proxy_location": "HeadOnly", "http_options": {"host": "127.0.0.1", "port": 8000},
                "applications": dict(self.apps)}

    def deploy_applications(self, config):
        self.put.append(config)
        self.apps = {app["name"]: self._app(app["name"], True) for app in config["applications"]}

    def delete_applications(self):
        self.deleted, self.apps = True, {}

    _address = "http://127.0.0.1:8265"


def test_delete_puts_the_other_applications_back_without_it():
    client = FakeServe("colorize", "other")
    assert serve_submit.delete(client, "colorize", timeout_s=5, poll_s=0) == ["other"]
    (payload,) = client.put
    assert [app["name"] for app in payload["applications"]] == ["other"]
    assert payload["http_options"]["port"] == 8000 and not client.deleted


def test_deleting_the_last_application_shuts_serve_down():
    client = FakeServe("colorize")
    assert serve_submit.delete(client, "colorize", timeout_s=5, poll_s=0) == []
    assert client.deleted and not client.put


def test_delete_refuses_an_unknown_name_and_keeps_python_deployed_apps():
    with pytest.raises(ColorizeError, match=r"no Serve application 'nope' on the cluster "
                                            r"\(deployed: colorize\)"):
        serve_submit.delete(FakeServe("colorize"), "nope", timeout_s=5)
    client = FakeServe("colorize", "byhand", imperative=("byhand",))
    with pytest.raises(ColorizeError, match="'byhand', deployed from Python"):
        serve_submit.delete(client, "colorize", timeout_s=5)
    assert not client.put and not client.deleted


def test_jobs_serve_delete_on_the_command_line(monkeypatch, capsys):
    client = FakeServe("colorize", "other")
    monkeypatch.setattr(serve_submit, "connect", lambda address, token_file: client)
    assert main(["jobs", "serve", "--delete", "colorize", "--address", "http://h:8265"]) == 0
    assert "deleted Serve application 'colorize'; still deployed: other" in capsys.readouterr().out
    assert main(["jobs", "serve", "--delete", "colorize", "--address", "http://h:8265"]) == 1
    assert "no Serve application 'colorize'" in one_line_error(capsys)


# --- HTTP errors from a cluster: one line --------------------------------------------------


@pytest.fixture()
def failing_dashboard():
    """A local HTTP server answering every request with a 500 and a two-line body."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def _answer(self):
            self.send_response(500)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(b"Internal Server Error\n  File \"x.py\", line 1")

        do_GET = do_PUT = do_DELETE = do_POST = _answer

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_cluster_status_on_an_http_error_is_one_line(failing_dashboard, tmp_path, capsys):
    (tmp_path / "auth_token").write_text("t" * 64)
    (tmp_path / "cluster.json").write_text(json.dumps({
        "state_dir": str(tmp_path), "gcs_address": "127.0.0.1:1", "nodes": [],
        "dashboard_url": failing_dashboard, "token_path": str(tmp_path / "auth_token"),
        "ray_temp_dir": str(tmp_path / "ray")}))
    assert main(["cluster", "status", "--dir", str(tmp_path)]) == 1
    err = one_line_error(capsys)
    assert f"the cluster at {failing_dashboard} answered HTTP 500" in err


@pytest.mark.parametrize("argv", [["jobs", "list"], ["jobs", "serve"],
                                  ["jobs", "serve", "--delete", "colorize"]])
def test_jobs_commands_on_an_http_error_are_one_line(failing_dashboard, argv, capsys):
    assert main([*argv, "--address", failing_dashboard]) == 1
    assert "answered HTTP 500" in one_line_error(capsys)


# --- help: every flag explained, one style for choices and yes/no -------------------------


def _every_action(parser, path="colorize"):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _every_action(sub, f"{path} {name}")
        else:
            yield path, action


def test_every_flag_has_help_and_one_style_for_choices_and_booleans():
    from colorize.cli.jobs import _serve_parser

    actions = [*_every_action(build_parser()), *_every_action(_serve_parser(), "submit")]
    assert len(actions) > 100
    for path, action in actions:
        name = f"{path} {'/'.join(action.option_strings) or action.dest}"
        assert action.help and action.help != argparse.SUPPRESS, f"{name} has no help"
        assert "(default: True" not in action.help and "(default: False" not in action.help, name
        if action.choices and not isinstance(action.choices, dict):
            assert action.metavar is None, f"{name}: choices are shown as argparse's {{a,b}}"
        if action.metavar and "{" in str(action.metavar):
            assert "|" not in action.metavar, name


def test_yes_no_flags_show_yes_or_no_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--global-context {yes,no}" in text and "(default: no; pretrained preset: yes)" in text
    assert "--calibrate {yes,no}" in text and "(default: yes" in text


def test_job_options_with_submit_serve_are_refused(capsys):
    assert main(["submit", "--follow", "serve", "m"]) == 2
    assert "--follow is for jobs" in one_line_error(capsys)
