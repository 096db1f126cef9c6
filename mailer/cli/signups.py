"""`mailer signups ...` and `mailer outbox`: sign-ups waiting for confirmation, and sending
their confirmation emails (mailer.send.outbox over the store's outbox)."""

from __future__ import annotations

import typer

from mailer.cli.app import app, get_config
from mailer.send.outbox import OutboxSummary
from mailer.store.db import open_store
from mailer.store.signups import SignupLimits, pending_signups, resend_held
from mailer.worker.jobs import drain_outbox

signups_app = typer.Typer(help="Sign-ups waiting for confirmation.", no_args_is_help=True)
app.add_typer(signups_app, name="signups")


@app.command()
def outbox(ctx: typer.Context) -> None:
    """Send the confirmation emails waiting in the outbox now, then exit.

    For deployments without `mailer serve` (which sends them itself within seconds): run it
    every minute, e.g. from cron.
    """
    config = get_config(ctx)
    total = OutboxSummary()
    with open_store(config.database_url).guard() as store:
        while True:  # one batch per run: go on while batches come back full
            done = drain_outbox(config, store)
            for name in ("sent", "deferred", "failed", "purged"):
                setattr(total, name, getattr(total, name) + getattr(done, name))
            if done.sent + done.deferred + done.failed == 0:
                break
    typer.echo(
        f"sent {total.sent}, deferred {total.deferred}, failed {total.failed}; "
        f"expired sign-ups removed {total.purged}"
    )


@signups_app.command("list")
def list_(ctx: typer.Context) -> None:
    """List the sign-ups not confirmed yet: email, state, signed up, link expires."""
    with open_store(get_config(ctx).database_url).guard() as store:
        for s in pending_signups(store):
            typer.echo(
                f"{s.email}\t{s.state}\t{s.signed_up_at:%Y-%m-%d %H:%M}\t"
                f"{s.expires_at:%Y-%m-%d %H:%M}\t{s.last_reply}"
            )


@signups_app.command("resend")
def resend(ctx: typer.Context) -> None:
    """Mail the sign-ups held back by the hourly cap (signup_emails_per_hour)."""
    config = get_config(ctx)
    with open_store(config.database_url).guard() as store:
        queued = resend_held(store, SignupLimits.from_config(config))
    typer.echo(
        f"queued {queued} confirmation emails (`mailer serve` or `mailer outbox` sends them)"
    )
