"""`concept explore` (a static HTML explorer) and `concept serve` (the same page served
locally, with search through the model)."""

from __future__ import annotations

import argparse
from pathlib import Path

from concept.cli._output import CLIError, _dates_file, _load, logger


def _dates(args: argparse.Namespace, model) -> list | str | None:
    """The page's dates from --exif / --dates FILE (None: no time histogram, no file opened)."""
    return _dates_file(model, args.dates) if args.dates else "exif" if args.exif else None


def _check_dates(args: argparse.Namespace) -> None:
    if args.mtime and not args.exif:
        raise CLIError("--mtime applies to dates read from the files: give --exif too")


def cmd_explore(args: argparse.Namespace) -> None:
    """Write the explorer page and its thumbnails (the first run also saves the 2-D map)."""
    from concept.explorer import write_report
    from concept.explorer.data import ensure_saved_map

    if Path(args.out).suffix.lower() not in (".html", ".htm"):
        raise CLIError(f"--out {args.out} must be an .html file")
    _check_dates(args)
    model = _load(args)
    dates = _dates(args, model)
    ensure_saved_map(model, args.model_dir)  # the first explore computes the map and saves it
    path = write_report(model, args.out, title=args.title, verbose=not args.quiet, dates=dates, mtime=args.mtime)
    files = path.parent / f"{path.stem}_files"
    print(f"Explorer of {len(model.labels_):,} images and {model.n_concepts_} concepts written to {path} "
          f"(thumbnails in {files}); open it in a browser, no network needed")


def cmd_serve(args: argparse.Namespace) -> None:
    """Serve the explorer until Ctrl+C."""
    from concept.explorer import make_server

    if not 0 <= args.port <= 65535:
        raise CLIError(f"--port {args.port} is not a port number (0-65535)")
    if args.max_upload_mb <= 0:
        raise CLIError(f"--max-upload-mb must be positive, got {args.max_upload_mb}")
    _check_dates(args)
    model = _load(args)
    server = make_server(args.model_dir, host=args.host, port=args.port, model=model, title=args.title,
                         max_upload_bytes=int(args.max_upload_mb * 1024 * 1024), dates=_dates(args, model),
                         mtime=args.mtime)
    if not server.loopback:
        logger.warning("Listening on %s: anyone who can reach this address can search the model and "
                       "read the model folder's files.", args.host)
    print(f"Serving the explorer of {args.model_dir} at {server.url} (Ctrl+C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("Stopped.")
    finally:
        server.server_close()
