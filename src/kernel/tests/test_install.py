"""The folder is a pip-installable package: installed (not from the checkout) it loads as an IPython extension."""

import os
import shutil
import subprocess
import sys

from conftest import KERNEL_PKG


def test_pip_install_of_the_folder_gives_a_working_extension(tmp_path):
    target = tmp_path / "site"
    # pip builds in the source folder (build/, *.egg-info): build a copy so the checkout stays clean.
    src = tmp_path / "src"
    shutil.copytree(KERNEL_PKG, src, ignore=shutil.ignore_patterns("tests", "build", "*.egg-info", "__pycache__"))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(src),
        ],
        check=True,
        env=env,
        capture_output=True,
        cwd=tmp_path,
    )
    code = (
        "import reason_segment, IPython\n"
        "from IPython.testing.globalipapp import start_ipython\n"
        "ip = start_ipython()\n"
        "ip.run_line_magic('load_ext', 'reason_segment')\n"
        "m = ip.magics_manager.magics\n"
        "assert {'segment', 'segment_followup'} <= set(m['cell']), m['cell'].keys()\n"
        "assert {'segment_followup', 'segment_config', 'segment_status', 'segment_stop'} <= set(m['line'])\n"
        "print(reason_segment.__file__)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=dict(env, PYTHONPATH=str(target)),
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().startswith(str(target)), out.stdout
