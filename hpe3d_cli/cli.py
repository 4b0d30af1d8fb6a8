"""``hpe3d``: run the pipeline on a video locally, serve the local stack, submit to a running
gateway, manage its API keys, lift a 2D keypoint file to 3D without any server, or adapt the lifter to a user's
own 2D."""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from pathlib import Path

from gateway.api.api_keys import add_key_commands, describe_key
from gateway.jobs.events import ProgressEvent
from hpe3d_cli.client import GatewayClient, GatewayError
from hpe3d_cli.keypoints_io import KeypointFormatError, parse_size, read_keypoints
from services.common.stage_names import STAGES

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def say(message: str) -> None:
    print(message, flush=True)


class ProgressPrinter:
    """One plain-text line whenever a stage's progress changes (works without a TTY)."""

    def __init__(self) -> None:
        self.last: dict[str, tuple[int, int]] = {}

    def __call__(self, event: ProgressEvent) -> None:
        for stage in STAGES:
            p = event.progress.get(stage)
            if p is None or p.total == 0 or self.last.get(stage) == (p.done, p.total):
                continue
            self.last[stage] = (p.done, p.total)
            say(f"{stage:>7}: {p.done}/{p.total} ({100 * p.done // p.total}%)")


def submit_and_collect(url: str, video: Path, out_dir: Path, options: dict[str, str], key: str = "") -> int:
    """Upload, follow to the end, download the artefacts; the process exit code."""
    def run(client: GatewayClient) -> int:
        job = client.submit(video, options)
        say(f"job {job.id} accepted: {url}{job.links.self}")
        done = client.follow(job.id, ProgressPrinter())
        for warning in done.warnings:
            say(f"warning: {warning}")
        if done.state.value != "succeeded":
            error = done.error
            say(f"job {job.id} {done.state.value}" + (f" in {error.stage}: {error.message}" if error else ""))
            return EXIT_FAILED
        paths = client.download_artifacts(client.job(job.id), out_dir)
        say(f"job {job.id} succeeded; {len(paths)} artefacts:")
        for path in paths:
            say(f"  {path}")
        return 0
    return with_gateway(url, key, run)


def with_gateway(url: str, key: str, action) -> int:
    """``action(client)``'s exit code; a refusal of the gateway is said and exits 1."""
    client = GatewayClient(url, key)
    try:
        return action(client)
    except GatewayError as exc:
        say(f"error: {exc}")
        return EXIT_FAILED
    finally:
        client.close()


def _options(args: argparse.Namespace) -> dict[str, str]:
    out = {}
    if args.max_persons is not None:
        out["max_persons"] = str(args.max_persons)
    if args.working_size is not None:
        out["working_size"] = str(args.working_size)
    if args.no_render:
        out["render"] = "false"
    if args.pose_model:
        out["pose_model"] = args.pose_model
    if args.lifter_weights:
        out["lifter_weights"] = args.lifter_weights
    return out


def _check_video(path: Path) -> None:
    """Refuse a path that is not a file; whether it is a usable video or photo is the gateway's
    probe to say (its answer names the reason)."""
    if not path.is_file():
        raise SystemExit(f"error: {path} is not a file")


def cmd_run(args: argparse.Namespace) -> int:
    from hpe3d_cli.local_stack import LocalStack
    _check_video(args.video)
    if args.keep_stack_logs:
        os.environ["HPE3D_KEEP_STACK_DIR"] = "1"
    stack = LocalStack(quiet=True)
    try:
        say("starting the local stack")
        stack.start(progress=say)
        say(f"gateway ready at {stack.gateway_url}")
        return submit_and_collect(stack.gateway_url, args.video, args.output, _options(args), stack.api_key)
    except KeyboardInterrupt:
        say("interrupted; stopping the stack")
        return EXIT_INTERRUPTED
    finally:
        stack.stop()
        if args.keep_stack_logs:
            say(f"stack logs kept in {stack.workdir}")


def cmd_serve(args: argparse.Namespace) -> int:
    import logging
    from hpe3d_cli.local_stack import LocalStack, parse_replicas
    try:
        replicas = parse_replicas(args.replicas or "")
    except ValueError as exc:
        say(f"error: {exc}")
        return EXIT_USAGE
    # The supervisor's restart lines go to stderr.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not every readiness probe
    stack = LocalStack(replicas=replicas, gateway_port=args.port, workdir=args.workdir)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    try:
        say("starting the local stack")
        stack.start(progress=say)
        for url in stack.gateway_urls:
            say(f"gateway: {url}/  (API docs: {url}/docs)")
        if stack.api_key:
            say(f"API key: {stack.api_key}")
            say("(an admin key of this run: sign the page in with it, or export HPE3D_API_KEY=... for hpe3d submit)")
        else:
            say("authentication is off (HPE3D_AUTH=off): anyone who reaches these ports sees every job")
        say(f"logs: {stack.workdir}")
        say("every part is restarted when it exits; press Ctrl-C to stop")
        while not stopping.wait(0.5):
            pass
        return 0
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    finally:
        say("stopping the stack")
        stack.stop()


def cmd_submit(args: argparse.Namespace) -> int:
    _check_video(args.video)
    try:
        return submit_and_collect(args.url, args.video, args.output, _options(args), args.key)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def cmd_keys(args: argparse.Namespace) -> int:
    """Make, list or revoke API keys through the gateway's admin routes (an admin key)."""
    def run(client: GatewayClient) -> int:
        if args.keys_command == "create":
            made = client.create_key(args.name, args.admin)
            say(f"key {made.id} for {made.name}{' (admin)' if made.admin else ''}; it is shown only now:")
            say(made.key)
        elif args.keys_command == "list":
            for key in client.list_keys():
                say(describe_key(key))
        else:
            client.revoke_key(args.key_id)
            say(f"key {args.key_id} revoked")
        return 0
    return with_gateway(args.url, args.key, run)


def cmd_lift(args: argparse.Namespace) -> int:
    try:
        size = parse_size(args.size) if args.size else None
        doc = json.loads(args.keypoints.read_text())
        parsed = read_keypoints(doc, size)
    except (OSError, json.JSONDecodeError) as exc:
        say(f"error: cannot read {args.keypoints}: {exc}")
        return EXIT_USAGE
    except KeypointFormatError as exc:
        say(f"error: {exc}")
        return EXIT_USAGE
    from hpe3d_cli.lift_outputs import frame_rate, lift_to_poses3d, video_info, write_outputs
    from services.lifter3d.lift import DEFAULT_WEIGHTS, load_lifter
    weights = args.weights or DEFAULT_WEIGHTS
    try:
        fps, warnings = frame_rate(doc, args.fps)
        model = load_lifter(weights)
    except (FileNotFoundError, ValueError) as exc:
        say(f"error: {exc}")
        return EXIT_USAGE
    poses3d = lift_to_poses3d(parsed, model, Path(weights).name, fps, args.focal_px or 0.0,
                              progress=lambda done, total, message: say(message))
    for path in write_outputs(video_info(parsed, doc, fps), poses3d, args.output, args.bvh, warnings):
        say(f"wrote {path}")
    return 0


def cmd_adapt(args: argparse.Namespace) -> int:
    from hpe3d_cli.adapt_inputs import AdaptInputError, load_tracks
    from services.lifter3d.lift import DEFAULT_WEIGHTS
    from training.adapt import AdaptSettings, adapt, card_path
    if args.upload and not args.url:
        say("error: --upload needs --url (the gateway to upload to)")
        return EXIT_USAGE
    try:
        tracks = load_tracks(args.inputs, args.url, args.key)
    except AdaptInputError as exc:
        say(f"error: {exc}")
        return EXIT_USAGE
    given = {k: getattr(args, k) for k in ("steps", "batch", "lr", "lr_final", "anchor", "distill", "distill_on",
                                           "prior_fit_steps", "limb_length_m", "rehearse", "seed")}
    settings = AdaptSettings(**{k: v for k, v in given.items() if v is not None})
    if args.prior_weight is not None:
        settings.losses.prior = args.prior_weight
    say(f"adapting {args.weights or DEFAULT_WEIGHTS} on {len(tracks)} tracks, "
        f"{sum(len(t.screen) for t in tracks)} frames")
    try:
        rehearsal = None
        if settings.rehearse > 0:
            from training.adapt import training_2d_windows
            rehearsal = training_2d_windows()
        report = adapt(args.weights or DEFAULT_WEIGHTS, tracks, args.output, settings, progress=say,
                       threads=args.threads, rehearsal=rehearsal)
    except (FileNotFoundError, ValueError) as exc:
        say(f"error: {exc}")
        return EXIT_USAGE
    say(f"wrote {report.out} and {card_path(args.output)}: reprojection error "
        f"{report.before['reprojection']:.4f} -> {report.after['reprojection']:.4f} on the inputs")
    if args.upload:
        return upload_weights(args.url, args.key, args.upload, args.output, card_path(args.output))
    return 0


def describe_weights(w) -> str:
    size = f", {w.size_bytes / 1e6:.1f} MB" if w.size_bytes else ""
    return f"{w.name}  ({w.kind}{', default' if w.default else ''}{size})  {w.summary}"


def upload_weights(url: str | None, key: str, name: str, weights: Path, card: Path | None) -> int:
    if not url:
        say("error: --url is needed to upload weights")
        return EXIT_USAGE
    if not weights.is_file():
        say(f"error: {weights} is not a file")
        return EXIT_USAGE

    def run(client: GatewayClient) -> int:
        made = client.upload_lifter_weights(name, weights, card if card is not None and card.is_file() else None)
        say(f"uploaded as {made.name}: jobs use it with lifter_weights={made.name} (hpe3d submit --lifter-weights "
            f"{made.name})")
        return 0
    return with_gateway(url, key, run)


def cmd_weights(args: argparse.Namespace) -> int:
    """List the lifter weights the caller may use, or upload or delete their own."""
    if args.weights_command == "upload":
        from training.adapt import card_path
        return upload_weights(args.url, args.key, args.name, args.file, args.card or card_path(args.file))

    def run(client: GatewayClient) -> int:
        if args.weights_command == "delete":
            client.delete_lifter_weights(args.name)
            say(f"deleted {args.name}")
            return 0
        for w in client.list_lifter_weights():
            say(describe_weights(w))
        return 0
    return with_gateway(args.url, args.key, run)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hpe3d", description="Monocular video to 3D human motion.")
    sub = parser.add_subparsers(dest="command", required=True)

    def api_key(p: argparse.ArgumentParser) -> None:
        p.add_argument("--key", default=os.environ.get("HPE3D_API_KEY", ""),
                       help="API key (default: the HPE3D_API_KEY environment variable)")

    def job_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--max-persons", type=int, help="most persons tracked per frame (server default if unset)")
        p.add_argument("--working-size", type=int, help="longer side of decoded frames in pixels")
        p.add_argument("--no-render", action="store_true", help="only the exports, no rendered MP4")
        p.add_argument("--pose-model", help="2D pose model (GET /v1/models lists them; default blazepose)")
        p.add_argument("--lifter-weights", help="3D lifter weights: a shipped name or one of yours "
                                                "(hpe3d weights list; default gastnet_bandai_27f)")

    run = sub.add_parser("run", help="start the local stack, process VIDEO, download the results")
    run.add_argument("video", type=Path, help="the video, or a photo (JPEG, PNG, WebP) for an image job")
    run.add_argument("-o", "--output", type=Path, required=True, help="directory for the artefacts")
    run.add_argument("--keep-stack-logs", action="store_true", help="keep the stack's working directory and logs")
    job_options(run)
    run.set_defaults(func=cmd_run)

    serve = sub.add_parser("serve", help="start the supervised local stack and wait (Ctrl-C stops it)")
    serve.add_argument("--port", type=int, default=0, help="port of the first gateway replica (default: a free one)")
    serve.add_argument("--replicas", default="", metavar="PART=N,...",
                       help="replicas per part, e.g. worker=2,gateway=2,pose2d=2 (parts: triton, decoder, "
                            "pose2d, lifter3d, renderer, worker, gateway)")
    serve.add_argument("--workdir", type=Path, help="directory for data and logs (default: a temporary one)")
    serve.set_defaults(func=cmd_serve)

    submit = sub.add_parser("submit", help="process VIDEO on a running gateway")
    submit.add_argument("video", type=Path, help="the video, or a photo (JPEG, PNG, WebP) for an image job")
    submit.add_argument("--url", required=True, help="gateway base URL, e.g. http://127.0.0.1:8080")
    submit.add_argument("-o", "--output", type=Path, required=True, help="directory for the artefacts")
    api_key(submit)
    job_options(submit)
    submit.set_defaults(func=cmd_submit)

    keys = sub.add_parser("keys", help="make, list or revoke API keys of a running gateway (an admin key)")
    keys.add_argument("--url", required=True, help="gateway base URL, e.g. http://127.0.0.1:8080")
    api_key(keys)
    add_key_commands(keys, "keys_command")
    keys.set_defaults(func=cmd_keys)

    lift = sub.add_parser("lift", help="lift a 2D keypoint JSON (ours or GAST-Net's) to 3D, no server")
    lift.add_argument("keypoints", type=Path)
    lift.add_argument("-o", "--output", type=Path, required=True, help="output JSON")
    lift.add_argument("--size", help="frame size WIDTHxHEIGHT (required for GAST-Net files)")
    lift.add_argument("--weights", type=Path, help="lifter weights (default: the shipped ones)")
    lift.add_argument("--bvh", type=Path, metavar="DIR", help="also write person_<track>.bvh files into DIR")
    lift.add_argument("--fps", type=float, help="frame rate of the keypoints (default: the file's, else 30)")
    lift.add_argument("--focal-px", type=float, help="camera focal length in pixels (default: a prior)")
    lift.set_defaults(func=cmd_lift)

    adapt = sub.add_parser("adapt", help="fine-tune the lifter on your own 2D (poses.json files or job ids), "
                                         "no 3D needed; writes weights for `lift --weights` and a card beside them")
    adapt.add_argument("inputs", nargs="+", metavar="JOB_OR_FILE",
                       help="poses.json files (ours) or GAST-Net keypoint JSON, or ids of finished jobs (with --url)")
    adapt.add_argument("-o", "--output", type=Path, required=True, help="adapted weights file to write")
    adapt.add_argument("--url", help="gateway base URL for job ids, e.g. http://127.0.0.1:8080")
    adapt.add_argument("--weights", type=Path, help="weights to start from (default: the shipped supervised ones)")
    # unset options take training.adapt.AdaptSettings' defaults
    adapt.add_argument("--steps", type=int, help="optimiser steps")
    adapt.add_argument("--batch", type=int, help="windows per step")
    adapt.add_argument("--lr", type=float, help="initial learning rate")
    adapt.add_argument("--lr-final", type=float, help="learning rate at the last step (cosine schedule)")
    adapt.add_argument("--anchor", type=float, help="weight of the pull towards the starting weights")
    adapt.add_argument("--distill", type=float, help="weight of the distillation from the starting network")
    adapt.add_argument("--distill-on", choices=("joints", "bone_directions"),
                       help="what the distillation holds: joint positions, or only the bones' directions")
    adapt.add_argument("--prior-weight", type=float, help="weight of the 2D pose prior term (0: left out)")
    adapt.add_argument("--prior-fit-steps", type=int,
                       help="with --prior-weight: fit the 2D prior to the inputs' own 2D for this many steps first")
    adapt.add_argument("--limb-length-m", type=float,
                       help="the people's mean limb length in metres (upper arm, forearm, thigh, shank), where you "
                            "know it; 2D cannot tell it (default: the starting lifter's own on your inputs)")
    adapt.add_argument("--rehearse", type=float,
                       help="weight of holding the starting lifter's output on its own training data's 2D "
                            "(needs the training mocap beside the checkout; default 0: off)")
    adapt.add_argument("--seed", type=int, help="random seed")
    adapt.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    adapt.add_argument("--upload", metavar="NAME", help="then upload the weights and their card to the gateway "
                                                        "(--url) as NAME, for the job option lifter_weights")
    api_key(adapt)
    adapt.set_defaults(func=cmd_adapt)

    weights = sub.add_parser("weights", help="lifter weights on a running gateway: list the ones you may use, "
                                             "upload or delete your own").add_subparsers(dest="weights_command",
                                                                                          required=True)
    weights_list = weights.add_parser("list", help="the shipped weights and yours, with their cards' summaries")
    weights_upload = weights.add_parser("upload", help="upload weights (e.g. from hpe3d adapt) for the job option "
                                                       "lifter_weights")
    weights_upload.add_argument("name", help="the name jobs will use (lowercase letters, digits, '_', '-')")
    weights_upload.add_argument("file", type=Path, help="the weights (.pt)")
    weights_upload.add_argument("--card", type=Path, help="the model card (default: <stem>.card.md beside the file, "
                                                          "as hpe3d adapt writes it, when present)")
    weights_delete = weights.add_parser("delete", help="delete your uploaded weights and their card")
    weights_delete.add_argument("name", help="the name of your weights (hpe3d weights list)")
    for p in (weights_list, weights_upload, weights_delete):
        p.add_argument("--url", required=True, help="gateway base URL, e.g. http://127.0.0.1:8080")
        api_key(p)
        p.set_defaults(func=cmd_weights)

    models = sub.add_parser("models", help="2D pose models for Triton").add_subparsers(dest="models_command",
                                                                                      required=True)
    export = models.add_parser("export", help="official HRNet / SimpleBaseline checkpoint -> Triton ONNX model folder")
    from services.triton.topdown import export_onnx
    export_onnx.add_arguments(export)
    export.set_defaults(func=export_onnx.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
