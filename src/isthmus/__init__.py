"""isthmus: move a legacy integer-keyed database onto a UUID-keyed PostgreSQL and keep both in step."""

# Must run before anything imports ssl: the MySQL C extension ships a newer OpenSSL.
from isthmus.dialects.mysql_driver import preload_c_extension

preload_c_extension()

__version__ = "0.1.0"
