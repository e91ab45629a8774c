"""The console's pages; importing this package registers their routes (`routes.ROUTES`)."""

from . import account, audit_log, canned, conversations, customers, home, live, login, media, staff  # noqa: F401
from . import bot_texts, coupons, faq, hours, keyword_rules, redeem, richmenu  # noqa: F401
