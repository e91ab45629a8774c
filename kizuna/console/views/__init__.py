"""The console's pages; importing this package registers their routes (`routes.ROUTES`)."""

from . import account, audit_log, home, login, staff  # noqa: F401
