"""qorch admin: accounts and API keys, directly against the configured Firestore.

    python -m tools.admin create-account --name "Acme" [--plan dev] [--entitled]
    python -m tools.admin set-account ACCOUNT_ID [--plan pro] [--entitled | --not-entitled]
    python -m tools.admin create-key ACCOUNT_ID --roles OWNER [--name laptop]
    python -m tools.admin create-key ACCOUNT_ID --roles DEVELOPER,TESTER --name ci-agents
    python -m tools.admin list-keys ACCOUNT_ID
    python -m tools.admin revoke-key KEY_ID
    python -m tools.admin add-member ACCOUNT_ID --uid FIREBASE_UID --email EMAIL --roles OWNER

Firestore is the one named by GOOGLE_CLOUD_PROJECT (and FIRESTORE_EMULATOR_HOST, when set, for the emulator).
"""

from __future__ import annotations

import argparse
import json
import sys

from shared.adapters.firestore import get_store
from shared.domain.errors import ProblemError
from shared.runtime.config import config
from shared.services import accounts, members


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.admin", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("create-account")
    p.add_argument("--name", required=True)
    p.add_argument("--plan", default="dev")
    p.add_argument("--entitled", action="store_true")
    p = sub.add_parser("set-account")
    p.add_argument("account_id")
    p.add_argument("--plan")
    p.add_argument("--entitled", dest="entitled", action="store_true", default=None)
    p.add_argument("--not-entitled", dest="entitled", action="store_false")
    p = sub.add_parser("create-key")
    p.add_argument("account_id")
    p.add_argument("--roles", required=True, help="comma-separated: OWNER and/or agent roles")
    p.add_argument("--name", default="")
    p = sub.add_parser("list-keys")
    p.add_argument("account_id")
    p = sub.add_parser("revoke-key")
    p.add_argument("key_id")
    p = sub.add_parser("add-member", help="make a Firebase user a member, without an invitation")
    p.add_argument("account_id")
    p.add_argument("--uid", required=True)
    p.add_argument("--email", required=True)
    p.add_argument("--roles", required=True, help="comma-separated: OWNER and/or agent roles, or VIEWER")
    args = parser.parse_args(argv)

    store = get_store()
    try:
        if args.command == "create-account":
            out = accounts.create_account(store, args.name, plan=args.plan, entitled=args.entitled)
        elif args.command == "set-account":
            out = accounts.set_account(store, args.account_id, plan=args.plan, entitled=args.entitled)
        elif args.command == "create-key":
            roles = accounts.validate_roles(args.roles.split(","))
            secret, record = accounts.create_key(store, args.account_id, roles, name=args.name,
                                                 env=config().key_env)
            print(json.dumps({"api_key": secret, **record.model_dump(mode="json")}, indent=2))
            print("Store the api_key now: it is not shown again.", file=sys.stderr)
            return 0
        elif args.command == "list-keys":
            out = accounts.list_keys(store, args.account_id)
        elif args.command == "add-member":
            out = members.add_member(store, args.account_id, args.uid, args.email,
                                     accounts.validate_roles(args.roles.split(",")), by="system:admin")
        else:
            out = accounts.revoke_key(store, args.key_id)
    except (ProblemError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    items = out if isinstance(out, list) else [out]
    print(json.dumps([i.model_dump(mode="json") for i in items] if isinstance(out, list)
                     else items[0].model_dump(mode="json"), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
