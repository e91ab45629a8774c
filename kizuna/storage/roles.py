"""Who may do what: the roles of staff accounts and API tokens, one name for each.

- admin: everything, and alone manages staff, API tokens, bot texts and settings;
- marketer: customers, segments, campaigns, coupons, FAQ — never support conversations;
- support: support conversations and the customers in them (was "staff" for API tokens);
- pos: API tokens of a shop's till or EC system (redeem coupons, send orders), never a person.
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    ADMIN = "admin"
    MARKETER = "marketer"
    SUPPORT = "support"
    POS = "pos"


# A person logging in to the console has one of these; `pos` is for systems only.
STAFF_ROLES = (Role.ADMIN, Role.MARKETER, Role.SUPPORT)
TOKEN_ROLES = tuple(Role)
# Who changes what marketers own (coupons, the FAQ and how the bot answers), and who may
# redeem a coupon at the till; the REST API and the console check the same groups.
MARKETING = (Role.ADMIN, Role.MARKETER)
TILL = (Role.ADMIN, Role.SUPPORT, Role.POS)
# Who reads and answers support conversations (and may be assigned one): never marketers.
CONVERSATION_ROLES = (Role.ADMIN, Role.SUPPORT)
