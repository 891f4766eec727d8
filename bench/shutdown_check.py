"""
Repeat the shutdown a terminal's Ctrl-C gives ``ros2 launch``, and report every exit.

Ctrl-C (and ``kill -INT -PGID``, ``timeout -s INT``) sends SIGINT to the whole process group,
and launch forwards one more to each child: the double SIGINT that used to leave tracebacks and
exit codes -2. For each launch file, N times: launch, wait until the pipeline runs (all
components loaded / every process started and the model loaded), SIGINT the group (with
``--twice``, a second SIGINT to launch 0.2 s later, as a user pressing Ctrl-C again), then read
launch's exit code and each process's from its log. Run in an environment from
scripts/env.sh, one at a time:

    python bench/shutdown_check.py --runs 10
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
import re
import signal
import subprocess
import sys
import tempfile
import time

LAUNCHES = {'composed': ('pipeline.launch.py', 1), 'split': ('pipeline_split.launch.py', 6)}


def ready(text: str, mode: str) -> bool:
    """Tell whether the pipeline runs: components loaded, or every split process started."""
    if mode == 'composed':
        return text.count('Loaded node') >= 6
    return text.count('process started') >= 6 and 'CPUExecutionProvider' in text


def one_run(mode: str, log: Path, start_timeout: float, twice: bool) -> dict:
    """Launch, wait until ready, double SIGINT, and collect what happened."""
    name, processes = LAUNCHES[mode]
    with open(log, 'w', encoding='utf-8') as stream:
        launch = subprocess.Popen(['ros2', 'launch', 'edge_infer_ros', name], stdout=stream,
                                  stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + start_timeout
        while not ready(log.read_text(errors='replace'), mode) and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(3.0)  # frames flowing for a while
        started = time.monotonic()
        os.killpg(launch.pid, signal.SIGINT)
        if twice:
            time.sleep(0.2)
            if launch.poll() is None:
                launch.send_signal(signal.SIGINT)
        try:
            rc = launch.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(launch.pid, signal.SIGKILL)
            rc = 'hung'
        seconds = time.monotonic() - started
    text = log.read_text(errors='replace')
    return {'rc': rc, 'seconds': seconds, 'clean': text.count('process has finished cleanly'),
            'expected': processes, 'died': re.findall(r'process has died \[[^\]]*\]', text),
            'tracebacks': text.count('Traceback'), 'errors': text.count('[ERROR]')}


def main() -> int:
    """Run the check and print one line per run and a summary per launch file."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--runs', type=int, default=10)
    parser.add_argument('--modes', nargs='+', default=list(LAUNCHES), choices=list(LAUNCHES))
    parser.add_argument('--start-timeout', type=float, default=90.0)
    parser.add_argument('--twice', action='store_true',
                        help='a second SIGINT to launch itself (Ctrl-C pressed twice)')
    options = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix='shutdown_check_'))
    failures = 0
    for mode in options.modes:
        good = 0
        for run in range(1, options.runs + 1):
            result = one_run(mode, folder / f'{mode}_{run}.log', options.start_timeout,
                             options.twice)
            ok = (result['rc'] == 0 and result['clean'] == result['expected'] and
                  not result['died'] and not result['tracebacks'] and not result['errors'])
            good += ok
            print(f'{mode} run {run}: launch exit {result["rc"]}, {result["clean"]}/'
                  f'{result["expected"]} finished cleanly, died {result["died"] or 0}, '
                  f'tracebacks {result["tracebacks"]}, [ERROR] lines {result["errors"]}, '
                  f'{result["seconds"]:.1f} s to exit', flush=True)
        failures += options.runs - good
        print(f'{mode}: {good}/{options.runs} clean (logs in {folder})', flush=True)
    subprocess.run(['ros2', 'daemon', 'stop'], stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=False)
    return 1 if failures else 0


if __name__ == '__main__':
    sys.exit(main())
