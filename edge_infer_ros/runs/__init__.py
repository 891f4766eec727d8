"""
The main job's runs, one module per job; the command line is runner.py.

options.py says what to run, composed.py and split.py run it, report.py builds what they
return and lays it out.
"""
