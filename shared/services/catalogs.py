"""The role playbooks and the model price table of this instance: read from the files that ship with the functions
(`shared.runtime.datafiles`), parsed and checked by the domain, once per instance on first use, then kept. A broken
file fails that first use with the reason (a deployment error: 500, logged), never a half-checked answer; the tests
check the shipped files, so a broken one does not get that far."""

from __future__ import annotations

from functools import cache

from shared.domain import playbooks as playbook_domain
from shared.domain import pricing
from shared.runtime import datafiles


@cache
def playbooks() -> playbook_domain.Library:
    """Every role's playbook, checked against the state table (each role's states and the transitions out of them)."""
    return playbook_domain.load_library(datafiles.read_playbooks())


@cache
def prices() -> pricing.PriceTable:
    return pricing.parse_prices(datafiles.read_prices())
