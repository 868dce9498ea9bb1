"""spark-submit's entry file for the streaming job (spark/stream_job.py has the job, its options and usage).

    spark-submit [spark options] jobs/stream_job.py [--available-now | --trigger INTERVAL | ...]

spark-submit runs a file, not a module, and puts that file's folder first on
sys.path. This folder holds nothing else, so nothing in it can shadow another
module (a file inside spark/ would make spark/'s modules importable under
top-level names). The project itself must be importable: `make setup`
installs it into .venv (editable), and the Docker image puts /opt/userstream
on PYTHONPATH.
"""

import sys

from spark.stream_job import main

if __name__ == "__main__":
    sys.exit(main())
