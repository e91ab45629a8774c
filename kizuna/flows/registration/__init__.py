"""Member registration: the flow, member info, marketing consent (see flow.py)."""

from .flow import COMMANDS, FLOWS, marketing, member_info, profile, registration
from .steps import registration_offer

__all__ = ["COMMANDS", "FLOWS", "marketing", "member_info", "profile", "registration", "registration_offer"]
