"""dev/check_docs.py: what the documentation points at exists, and a pointer to nothing is reported."""

from __future__ import annotations

from helpers import load_tool

check_docs = load_tool("check_docs", "dev")


def test_the_repository_documentation_points_only_at_what_exists():
    """Every relative link and anchor, backticked repository path (and pytest node id), make target, script, script
    option and config named in README.md, docs/, benchmarks/README.md, dev/README.md and dev/LOG.md exists."""
    assert check_docs.main([]) == 0


def test_missing_paths_tests_and_anchors_are_reported(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "See `tests/tools/test_check_docs.py::test_missing_paths_tests_and_anchors_are_reported` and\n"
        "`tests/tools/test_check_docs.py::test_that_was_renamed`, `r1lit/no_such_module.py`,\n"
        "[the design](../no_such.md) and `r1lit/policy/compile.py`.\n"
    )
    problems = check_docs.check_file(page)
    assert len(problems) == 3
    assert "no such test in tests/tools/test_check_docs.py" in problems[1] and "test_that_was_renamed" in problems[1]
    assert "`r1lit/no_such_module.py`: no such path" in problems[2]
    assert "link to ../no_such.md: no such file" in problems[0]


def test_a_build_output_git_ignores_is_not_a_missing_path(tmp_path):
    """`dev/gpu/wheels` exists only after `make gpu-wheels`: absent from a clone, and not an error; a path git does not
    ignore still is."""
    page = tmp_path / "page.md"
    page.write_text("Carry `dev/gpu/wheels/no-such-wheel-0.0.tar.gz` beside `dev/gpu/no_such_config.json`.\n")
    assert check_docs.check_file(page) == [f"{page}: `dev/gpu/no_such_config.json`: no such path"]
    assert check_docs.build_output("tests/no_such_package/__pycache__")  # an absent folder a folder-only pattern ignores
    assert not check_docs.build_output("tests/no_such_package/module.py")
