"""Campaigns (next issue): segment rules compiled to SQL, customer metrics, the scheduler, the
audience snapshot, step sequences, triggers, attribution. Imports only storage/ (pyproject's
import contracts); empty until then, so the contract holds from the start."""
