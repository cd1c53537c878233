"""The run's terminal output (pipelines/progress.py, pipelines/run.py): a line per asset, the
checks counted per asset, failures in full, and Dagster's event log in the file only."""

import io
import warnings

import dagster as dg
import pytest

from pipelines.progress import RunProgress, key_figure
from pipelines.run import run_output, with_progress
from ranklab.console import console, is_own_file, quiet_output


@dg.asset
def numbers(context: dg.AssetExecutionContext) -> list[int]:
    context.add_output_metadata({"rows": 3, "features": 2})
    return [1, 2, 3]


@dg.asset_check(asset=numbers, blocking=True)
def numbers_positive(numbers: list[int]) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=all(n > 0 for n in numbers))


@dg.asset_check(asset=numbers, blocking=True)
def numbers_even(numbers: list[int]) -> dg.AssetCheckResult:
    even = all(n % 2 == 0 for n in numbers)
    return dg.AssetCheckResult(passed=even, description="2 of 3 numbers are odd")


@dg.asset
def total(context: dg.AssetExecutionContext, numbers: list[int]) -> int:
    context.add_output_metadata({"headline": f"sum {sum(numbers)}"})
    return sum(numbers)


@dg.asset
def broken(numbers: list[int]) -> None:
    raise ValueError("the broken asset cannot divide by zero")


def _run(*assets, checks=(), verbose=False) -> tuple[dg.ExecuteInProcessResult, str, str]:
    out, log = io.StringIO(), io.StringIO()
    defs = dg.Definitions(assets=list(assets), asset_checks=list(checks))
    job = defs.resolve_implicit_global_asset_job_def()
    job, run_config = with_progress(job, RunProgress(out, log), verbose)
    result = job.execute_in_process(run_config=run_config, raise_on_error=False)
    return result, out.getvalue(), log.getvalue()


def test_one_line_per_asset_with_its_key_figure_and_the_event_log_in_the_file():
    result, out, log = _run(numbers, total, checks=[numbers_positive])
    assert result.success
    lines = out.splitlines()
    assert [line.split()[0] for line in lines] == ["numbers", "numbers", "total"]
    assert "3 rows x 2 features" in lines[0]
    assert "1/1 checks passed" in lines[1]
    assert "sum 6" in lines[2]
    assert "STEP_SUCCESS" in log and "STEP_SUCCESS" not in out  # the event log: file only


def test_a_failed_blocking_check_is_named_and_downstream_is_listed_as_skipped():
    result, out, _ = _run(numbers, total, checks=[numbers_positive, numbers_even])
    assert not result.success
    assert "FAILED check numbers_even on numbers: 2 of 3 numbers are odd" in out
    assert "1/2 checks passed; FAILED: numbers_even" in out
    assert "not run (upstream failed): total" in out


def test_a_failing_asset_prints_its_error_and_stack_in_full():
    result, out, _ = _run(numbers, broken)
    assert not result.success
    assert "FAILED broken:" in out
    assert "ValueError: the broken asset cannot divide by zero" in out
    assert "Traceback" in out or 'File "' in out  # the stack, not just the message


def test_key_figure_prefers_the_headline_then_row_counts():
    assert key_figure({"headline": "v2 -> champion", "rows": 9}) == "v2 -> champion"
    assert key_figure({"rows.users": 2000, "rows.items": 10}) == "users 2,000, items 10"
    assert key_figure({"path": "/x", "decision": "champion"}) == "decision champion"
    assert key_figure({}) == ""


def test_quiet_output_sends_library_output_and_foreign_warnings_to_the_log(tmp_path):
    log_path = tmp_path / "logs" / "run.log"
    with run_output(log_path, verbose=False) as (terminal, _log):
        print("a library's print")
        warnings.warn_explicit("a dependency is deprecated", UserWarning, "/venv/x.py", 1)
        assert console() is not None
        terminal.write("a progress line\n")
    text = log_path.read_text()
    assert "a library's print" in text and "a dependency is deprecated" in text
    assert "a progress line" not in text


def test_a_warning_from_our_own_modules_stays_on_the_terminal(capsys):
    import pipelines.progress as own_module

    log = io.StringIO()
    with quiet_output(log):
        warnings.warn_explicit("ours is deprecated", UserWarning, own_module.__file__, 1)
    assert "ours is deprecated" in capsys.readouterr().err
    assert "ours is deprecated" not in log.getvalue()


@pytest.mark.parametrize(
    ("filename", "own"),
    [(__file__, False), ("/usr/lib/python3.11/site-packages/dagster/x.py", False)],
)
def test_tests_and_dependencies_are_not_our_modules(filename, own):
    assert is_own_file(filename) is own


def test_pytest_turns_a_warning_from_our_modules_into_an_error():
    """pyproject's filterwarnings: a deprecated call of ours fails the suite."""
    with pytest.raises(DeprecationWarning, match="old call"):
        warnings.warn_explicit("old call", DeprecationWarning, "models/x.py", 1, module="models.x")
    with pytest.raises(UserWarning, match="ours"):
        warnings.warn_explicit("ours", UserWarning, "serving/x.py", 1, module="serving.x")


def test_warnings_held_before_the_log_exists_are_sent_where_they_belong(capsys):
    import pipelines.progress as own_module
    from ranklab.console import held_warnings

    with held_warnings() as held:  # a command's imports, before its log file is known
        warnings.warn_explicit("a dependency's import warns", UserWarning, "/venv/y.py", 1)
        warnings.warn_explicit("ours warns", UserWarning, own_module.__file__, 2)
    log = io.StringIO()
    with quiet_output(log, held):
        pass
    assert "a dependency's import warns" in log.getvalue()
    assert "ours warns" in capsys.readouterr().err and "ours warns" not in log.getvalue()
