"""SQLite connect arguments for the test deployment: four Airflow processes and the CLI share
one SQLite file, so writers wait for the lock (up to a minute) instead of failing at once."""

SYNC = {"timeout": 60}
ASYNC = {"timeout": 60}
