"""The operator's command line, ``claimledger``: serve the gateway, create organisations, issue and
revoke API keys, show the status of a data folder. Every command reads the same Settings
(``CLAIMLEDGER_*`` and ``.env``); ``--data-dir`` overrides the data folder.

    claimledger serve                         the embedded default: node, contract, API (first run: demo keys)
    claimledger org create PROV-B --role provider
    claimledger key issue PROV-B
    claimledger key revoke clk_AbCdEfGh
    claimledger status
    claimledger import claims/ --key clk_...     X12 837 / 835 and FHIR files posted to the gateway
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from sqlalchemy import func, select

from api.settings import Settings
from ledger.consortium import MEMBER_ROLES, Consortium
from ledger.deploy import load_deployment
from ledger.errors import LedgerError
from ledger.store import indexed_claims, make_engine

app = typer.Typer(help="ClaimLedger: a permissioned ledger of medical claims.", no_args_is_help=True)
org_app = typer.Typer(help="Consortium organisations.", no_args_is_help=True)
key_app = typer.Typer(help="API keys.", no_args_is_help=True)
app.add_typer(org_app, name="org")
app.add_typer(key_app, name="key")

DataDir = Annotated[
    Path | None, typer.Option("--data-dir", help="The data folder (default: CLAIMLEDGER_DATA_DIR or ./data).")
]


def settings_for(data_dir: Path | None, **overrides: Any) -> Settings:
    values = {k: v for k, v in overrides.items() if v is not None}
    if data_dir is not None:
        values["data_dir"] = data_dir
    return Settings(**values)


def _fail(exc: LedgerError) -> typer.Exit:
    typer.secho(f"error: {exc.message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code=1)


@contextmanager
def _consortium_only(settings: Settings) -> Iterator[Consortium]:
    """The consortium's SQL tables, without the chain (API keys need nothing else)."""
    import api.runtime  # noqa: F401 - the tables' definitions

    engine = make_engine(settings.sql_url)
    try:
        yield Consortium(
            engine,
            None,
            None,
            passphrase=settings.keystore_passphrase.get_secret_value(),
            kdf_iterations=settings.kdf_iterations,
            funding_wei=0,
        )
    finally:
        engine.dispose()


def _when(seconds: int | None) -> str:
    return "-" if seconds is None else datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


@app.command()
def serve(
    data_dir: DataDir = None,
    host: Annotated[str | None, typer.Option(help="Listen address (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Listen port (default 8000).")] = None,
) -> None:
    """Start the gateway (and, without CLAIMLEDGER_RPC_URL, the embedded node over the data folder)."""
    import uvicorn

    from api.main import create_app

    settings = settings_for(data_dir, host=host, port=port)
    typer.echo(
        f"ClaimLedger: data folder {settings.data_dir.resolve()}, serving http://{settings.host}:{settings.port}"
    )
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level=settings.log_level)


@org_app.command("create")
def org_create(
    name: Annotated[str, typer.Argument(help="The organisation's consortium id, e.g. PROV-B or PAYER-ACME.")],
    role: Annotated[str, typer.Option("--role", help=f"One of {', '.join(MEMBER_ROLES)}.")],
    data_dir: DataDir = None,
) -> None:
    """Create an organisation: its chain account (encrypted keystore), gas, on-chain registration, first key."""
    from api.runtime import Runtime

    settings = settings_for(data_dir)
    try:
        runtime = Runtime.open(settings, serve=False)
    except LedgerError as exc:
        raise _fail(exc) from exc
    try:
        org = runtime.consortium.create_organisation(name, role)
        key = runtime.consortium.issue_key(org.name, label="first key")
    except LedgerError as exc:
        raise _fail(exc) from exc
    finally:
        runtime.close()
    typer.echo(f"organisation {org.name}: {org.role}, on-chain index {org.chain_index}, account {org.address}")
    typer.echo(f"API key (shown this once): {key.key}")


@org_app.command("list")
def org_list(data_dir: DataDir = None) -> None:
    """List the organisations this gateway holds."""
    with _consortium_only(settings_for(data_dir)) as consortium:
        for org in consortium.organisations():
            typer.echo(f"{org.name:<16} {org.role:<9} index {org.chain_index}  {org.address}  {org.status}")


@key_app.command("issue")
def key_issue(
    organisation: Annotated[str, typer.Argument(help="The organisation, e.g. PROV-A (or OPERATOR for admin).")],
    label: Annotated[str | None, typer.Option(help="A note to tell keys apart.")] = None,
    data_dir: DataDir = None,
) -> None:
    """Issue an API key (shown this once)."""
    with _consortium_only(settings_for(data_dir)) as consortium:
        try:
            key = consortium.issue_key(organisation.strip().upper(), label=label)
        except LedgerError as exc:
            raise _fail(exc) from exc
    typer.echo(f"API key for {key.organisation} (shown this once): {key.key}")
    typer.echo(f"prefix (to revoke it): {key.prefix}")


@key_app.command("revoke")
def key_revoke(
    prefix: Annotated[str, typer.Argument(help="The key's prefix (its first 12 characters).")],
    data_dir: DataDir = None,
) -> None:
    """Revoke an API key by its prefix; it stops working at once."""
    from api.runtime import note_keys_changed

    settings = settings_for(data_dir)
    with _consortium_only(settings) as consortium:
        try:
            info = consortium.revoke_key(prefix[:12])
        except LedgerError as exc:
            raise _fail(exc) from exc
    note_keys_changed(settings.data_dir)  # a gateway serving this folder forgets the keys it knows
    typer.echo(f"revoked {info.prefix} of {info.organisation} at {_when(info.revoked_at)}")


@key_app.command("list")
def key_list(organisation: Annotated[str | None, typer.Argument()] = None, data_dir: DataDir = None) -> None:
    """List API keys by prefix (the keys themselves are never stored)."""
    with _consortium_only(settings_for(data_dir)) as consortium:
        for k in consortium.api_keys(organisation.strip().upper() if organisation else None):
            state = f"revoked {_when(k.revoked_at)}" if k.revoked_at else "active"
            typer.echo(f"{k.prefix}  {k.organisation:<16} {state:<30} {k.label or ''}")


@app.command()
def status(data_dir: DataDir = None) -> None:
    """The data folder: node, deployment, organisations, keys, claims indexed."""
    from api.runtime import NODE_FILE, _running_node

    settings = settings_for(data_dir)
    typer.echo(f"data folder   {settings.data_dir.resolve()}")
    if settings.embedded:
        running = _running_node(settings)
        typer.echo(f"node          {'embedded, running at ' + running if running else 'embedded, not running'}")
        if not running and (settings.data_dir / NODE_FILE).exists():
            typer.echo("              (a stale node record: the last server did not stop cleanly)")
    else:
        typer.echo(f"node          {settings.rpc_url}")
    deployment = load_deployment(settings.data_dir)
    address = settings.contract_address or (deployment.address if deployment else None)
    typer.echo(
        f"contract      {address or 'not deployed yet'}"
        + (f" (chain {deployment.chain_id}, block {deployment.block_number})" if deployment else "")
    )
    with _consortium_only(settings) as consortium:
        orgs = consortium.organisations()
        keys = [k for k in consortium.api_keys() if k.revoked_at is None]
        with consortium.engine.connect() as conn:
            claims = conn.execute(select(func.count()).select_from(indexed_claims)).scalar() or 0
    typer.echo(f"organisations {len(orgs)}: " + (", ".join(f"{o.name} ({o.role})" for o in orgs) or "none yet"))
    typer.echo(f"api keys      {len(keys)} active")
    typer.echo(f"claims        {claims} indexed")


@app.command("import")
def import_files(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders of X12 837/835 and FHIR JSON files.")],
    key: Annotated[
        str, typer.Option("--key", envvar="CLAIMLEDGER_API_KEY", help="The API key of the organisation importing.")
    ],
    url: Annotated[str, typer.Option("--url", help="The gateway.")] = "http://127.0.0.1:8000",
) -> None:
    """Post every file to the gateway (837 and FHIR with a provider's key, 835 with a payer's) and sum up:
    recorded, exact duplicates, suspects, invalid with their reasons. Exit 1 when a file was refused whole."""
    import httpx

    from api.importer import ImportFileError, Totals, files_in, new_run_id, send_file

    try:
        files = files_in(paths)
    except ImportFileError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        raise typer.Exit(code=1) from None
    if not files:
        typer.secho("error: no X12 or JSON files there", err=True, fg=typer.colors.RED)
        raise typer.Exit(code=1)
    totals = Totals()
    run_id = new_run_id()
    refused: list[str] = []
    client = httpx.Client(base_url=url, headers={"X-API-Key": key}, timeout=600.0, trust_env=False)
    bar = typer.progressbar(files, label="importing", show_pos=True, item_show_func=lambda p: p.name if p else "")
    with client, bar as progress:
        for path in progress:
            answer = send_file(client, path, run_id=run_id)
            totals.add(answer)
            if answer.error:
                refused.append(f"{path}: {answer.error}")
    for line in totals.lines():
        typer.echo(line)
    for line in refused:
        typer.secho(f"refused  {line}", err=True, fg=typer.colors.RED)
    if refused:
        raise typer.Exit(code=1)


if __name__ == "__main__":
    app()
