"""The console's pages. Each module lists its routes in `ROUTES`; `routes()` joins them for the
app factory."""

from ..routes import ConsoleRoute

from . import account, analytics, api_tokens, audit_log, bot_texts, canned, conversations, coupons, customers, faq, home, hours
from . import automations, campaigns, data_requests, friend_sources, keyword_rules, live, login, media, merges, privacy, redeem
from . import breach, retention, richmenu, segments, sequences, staff

MODULES = (
    login, account, home, conversations, customers, canned, media, live, staff, merges, api_tokens, audit_log,
    faq, keyword_rules, hours, bot_texts, coupons, redeem, richmenu, segments, campaigns, sequences, analytics, friend_sources,
    automations, privacy, data_requests, retention, breach,
)


def routes() -> list[ConsoleRoute]:
    return [item for module in MODULES for item in module.ROUTES]
