#!/usr/bin/env bash
# Docker smoke test: build the topofix image and run it on the sample data.
#
# Built for machines without a Docker engine and without a container registry (see
# docs/docker.md): podman builds the repository's Dockerfile on a Debian base made here with
# debootstrap (cached as a local image, made once), and `buildah run --isolation=chroot` runs
# the commands in the built image, since `podman run` fails on such sandboxes (crun cannot
# set rlimits: "setrlimit RLIMIT_NOFILE: Operation not permitted"). Every command in the image
# runs without network (`unshare --net`), as the image must.
#
# Not part of the default test run (minutes cold, about one warm). Run as root:
#   scripts/docker-smoke.sh                # build (layers cached) and test
#   scripts/docker-smoke.sh --no-cache     # rebuild every layer
#   scripts/docker-smoke.sh --rebuild-base # also remake the debootstrapped base
#
# Needs: podman buildah crun fuse-overlayfs uidmap slirp4netns debootstrap (apt-get install),
# python3 on the host (to check the reports), network to deb.debian.org and PyPI for the build.
# Settings (environment):
#   TOPOFIX_SMOKE_IMAGE        image to build                   [localhost/topofix:smoke]
#   TOPOFIX_SMOKE_SUITE        Debian release of the base        [bookworm: python 3.11]
#   TOPOFIX_SMOKE_MIRROR       Debian mirror                     [http://deb.debian.org/debian]
#   TOPOFIX_SMOKE_BASE         base image name                   [localhost/topofix-base:SUITE]
#   TOPOFIX_SMOKE_TORCH_WHEELS folder with the torch wheel (torch-<pin>+cpu-*.whl), given to
#                              the build as the torch-wheels context; when it holds none, the
#                              build takes torch from the PyTorch CPU index     [/opt/wheels]
#   TOPOFIX_SMOKE_CA_BUNDLE    CA bundle for pip in the build (secret pip_cert)
#                                                         [/etc/ssl/certs/ca-certificates.crt]
#   TOPOFIX_SMOKE_KEEP=1       keep the work folder (inputs, outputs, logs)
#   TOPOFIX_SMOKE_NNUNET=1     build with --build-arg WITH_NNUNET=1 and check that nnU-Net model
#                              folders are usable in the image (nnunetv2 imports there)    [0]
set -euo pipefail

T0=$(date +%s)
ROOT=$(cd "$(dirname "$0")/.." && pwd)
IMAGE=${TOPOFIX_SMOKE_IMAGE:-localhost/topofix:smoke}
SUITE=${TOPOFIX_SMOKE_SUITE:-bookworm}
MIRROR=${TOPOFIX_SMOKE_MIRROR:-http://deb.debian.org/debian}
BASE=${TOPOFIX_SMOKE_BASE:-localhost/topofix-base:$SUITE}
TORCH_WHEELS=${TOPOFIX_SMOKE_TORCH_WHEELS:-/opt/wheels}
CA_BUNDLE=${TOPOFIX_SMOKE_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
NO_CACHE=()
REBUILD_BASE=0
for arg in "$@"; do
    case $arg in
        --no-cache) NO_CACHE=(--no-cache) ;;
        --rebuild-base) REBUILD_BASE=1 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "docker-smoke: unknown argument: $arg" >&2; exit 2 ;;
    esac
done

step() { printf '\n==> [%4ss] %s\n' "$(($(date +%s) - T0))" "$*"; }
fail() { printf '\ndocker-smoke: FAILED: %s\n' "$*" >&2; exit 1; }
show() { printf '    $'; printf ' %q' "$@"; printf '\n'; }

for tool in podman buildah unshare python3; do
    command -v "$tool" >/dev/null || fail "$tool not found (apt-get install podman buildah crun fuse-overlayfs uidmap slirp4netns debootstrap)"
done
[ "$(id -u)" = 0 ] || fail "run as root (debootstrap, chroot isolation, unshare --net)"

WORK=$(mktemp -d /var/tmp/topofix-smoke.XXXXXX)
CONTAINERS=()
BASE_DIR=
cleanup() {
    local rc=$?
    for c in "${CONTAINERS[@]}"; do buildah rm "$c" >/dev/null 2>&1 || true; done
    if [ -n "$BASE_DIR" ]; then rm -rf "$BASE_DIR"; fi
    if [ "${TOPOFIX_SMOKE_KEEP:-0}" = 1 ]; then echo "work folder kept: $WORK"; else rm -rf "$WORK"; fi
    printf '\ndocker-smoke: %s in %ss\n' "$([ $rc = 0 ] && echo PASSED || echo "FAILED (exit $rc)")" "$(($(date +%s) - T0))"
}
trap cleanup EXIT

# --- 1. Base image: Debian minbase + python3 + venv, imported into podman (made once) ------------
if [ "$REBUILD_BASE" = 1 ] || ! podman image exists "$BASE"; then
    command -v debootstrap >/dev/null || fail "debootstrap not found (apt-get install debootstrap)"
    step "making the base image $BASE (debootstrap --variant=minbase $SUITE, then python3, python3-venv)"
    BASE_DIR=$(mktemp -d /var/tmp/topofix-base.XXXXXX)
    show debootstrap --variant=minbase "$SUITE" "$BASE_DIR" "$MIRROR"
    debootstrap --variant=minbase "$SUITE" "$BASE_DIR" "$MIRROR" > "$WORK/debootstrap.log" 2>&1 \
        || { tail -20 "$WORK/debootstrap.log"; fail "debootstrap"; }
    show chroot "$BASE_DIR" apt-get install python3 python3-venv ca-certificates
    chroot "$BASE_DIR" /bin/sh -ec '
        export DEBIAN_FRONTEND=noninteractive LC_ALL=C
        apt-get update -q
        apt-get install -y -q --no-install-recommends python3 python3-venv ca-certificates
        apt-get clean
        rm -rf /var/lib/apt/lists/* /usr/share/doc/* /usr/share/man/* /var/log/*.log
        python3 -c "import sys, venv; assert sys.version_info >= (3, 10), sys.version"
    ' > "$WORK/base-apt.log" 2>&1 || { tail -20 "$WORK/base-apt.log"; fail "installing python3 in the base"; }
    show podman import - "$BASE"
    tar -C "$BASE_DIR" -c . | podman import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'CMD ["/bin/bash"]' \
        - "$BASE" >/dev/null
    rm -rf "$BASE_DIR"; BASE_DIR=
else
    step "base image $BASE exists (--rebuild-base to remake it)"
fi

# --- 2. Build -----------------------------------------------------------------------------------
TORCH_PIN=$(sed -n 's/^torch==//p' "$ROOT/constraints.txt")
BUILD=(podman build --isolation=chroot --network=host --pull=never "${NO_CACHE[@]}"
       --build-arg "BASE_IMAGE=$BASE" --tag "$IMAGE" --file "$ROOT/Dockerfile")
if compgen -G "$TORCH_WHEELS/torch-$TORCH_PIN+cpu-*.whl" >/dev/null; then
    # download.pytorch.org is not reachable here: the CPU wheel comes from a local folder.
    BUILD+=(--build-context "torch-wheels=$TORCH_WHEELS" --build-arg TORCH_INDEX_URL=)
    torch_route="local wheel from $TORCH_WHEELS"
else
    torch_route="PyTorch CPU index"
fi
if [ -f "$CA_BUNDLE" ]; then BUILD+=(--secret "id=pip_cert,src=$CA_BUNDLE"); fi
if [ "${TOPOFIX_SMOKE_NNUNET:-0}" = 1 ]; then BUILD+=(--build-arg WITH_NNUNET=1); fi
BUILD+=("$ROOT")
step "building $IMAGE (torch $TORCH_PIN+cpu: $torch_route; log: $WORK/build.log)"
show "${BUILD[@]}"
old_id=$(podman image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)
tb=$(date +%s)
"${BUILD[@]}" > "$WORK/build.log" 2>&1 || { tail -40 "$WORK/build.log"; fail "podman build"; }
build_s=$(($(date +%s) - tb))
# The image this build replaced (if any), untagged now: removed, so that reruns do not pile up.
new_id=$(podman image inspect --format '{{.Id}}' "$IMAGE")
if [ -n "$old_id" ] && [ "$old_id" != "$new_id" ]; then podman rmi "$old_id" >/dev/null 2>&1 || true; fi
size=$(podman image inspect --format '{{.Size}}' "$IMAGE")
echo "    built in ${build_s}s; image size $(python3 -c "print(f'{$size / 1e9:.2f} GB')")"

# --- 3. Image configuration ---------------------------------------------------------------------
step "checking the image configuration (entrypoint, user, workdir, environment)"
config=$(podman image inspect --format '{{json .Config}}' "$IMAGE")
ENTRYPOINT_JSON=$(python3 - "$config" <<'EOF'
import json, sys
c = json.loads(sys.argv[1])
env = dict(e.split("=", 1) for e in c.get("Env") or [])
problems = []
if c.get("Entrypoint") != ["topofix"]: problems.append(f"entrypoint {c.get('Entrypoint')}")
if c.get("WorkingDir") != "/data": problems.append(f"workdir {c.get('WorkingDir')}")
if c.get("User", "").split(":")[0] in ("", "0", "root"): problems.append(f"user {c.get('User')!r} (root)")
if env.get("PIP_NO_INDEX") != "1": problems.append("PIP_NO_INDEX is not 1")
if not env.get("NUMBA_CACHE_DIR"): problems.append("NUMBA_CACHE_DIR unset")
if problems: sys.exit("image configuration: " + "; ".join(problems))
print(json.dumps(c["Entrypoint"]))
print(f"    entrypoint {c['Entrypoint']}, user {c['User']}, workdir {c['WorkingDir']}, "
      f"NUMBA_CACHE_DIR={env['NUMBA_CACHE_DIR']}", file=sys.stderr)
EOF
) || fail "image configuration"
mapfile -t ENTRYPOINT < <(python3 -c 'import json, sys; print(*json.loads(sys.argv[1]), sep="\n")' "$ENTRYPOINT_JSON")
IMAGE_UID=$(podman image inspect --format '{{.Config.User}}' "$IMAGE"); IMAGE_UID=${IMAGE_UID%%:*}

# --- 4. Runs, as `docker run --rm --network none -v IN:/data/in:ro -v OUT:/data/out IMAGE ...` ---
mkdir -p "$WORK/in" "$WORK/out"
cp "$ROOT/sample_data/images/img_002.png" "$ROOT/sample_data/images/stack_02.mha" "$WORK/in/"
chown "$IMAGE_UID" "$WORK/out"     # the image's user writes the outputs
# Printed as the docker command it stands for; here: a fresh container per command (like
# --rm), `buildah run` with the image's entrypoint prepended, in a new network namespace.
run_image() {
    local ctr rc=0
    ctr=$(buildah from --pull=never --quiet "$IMAGE")
    CONTAINERS+=("$ctr")
    show docker run --rm --network none -v "$WORK/in:/data/in:ro" -v "$WORK/out:/data/out" "$IMAGE" "$@" >&2
    unshare --net buildah run --isolation=chroot \
        --volume "$WORK/in:/data/in:ro" --volume "$WORK/out:/data/out" \
        "$ctr" -- "${ENTRYPOINT[@]}" "$@" || rc=$?
    buildah rm "$ctr" >/dev/null
    return $rc
}

step "topofix --version"
version=$(run_image --version) || fail "topofix --version"
echo "    $version"
expected=$(sed -n 's/^__version__ *= *"\(.*\)"/\1/p' "$ROOT/topofix/_version.py")
[ "$version" = "topofix $expected" ] || fail "version: '$version', expected 'topofix $expected'"

step "topofix check on the bundled sample masks (5 are broken on purpose: exit status 1)"
echo "    (buildah then prints 'subprocess exited with status 1' and 'Error: exit status 1': expected)"
rc=0
run_image check /opt/topofix/sample_data/masks --per-slice z --prior 1=1,0 --prior 2=1,1 \
    --prior 2+3=1,0 --json /data/out/check.json --quiet || rc=$?
[ "$rc" = 1 ] || fail "topofix check: exit status $rc, expected 1"
python3 - "$WORK/out/check.json" "$ROOT/sample_data/masks/MANIFEST.json" <<'EOF' || fail "check report"
import json, os, sys
report = json.load(open(sys.argv[1]))
manifest = json.load(open(sys.argv[2]))
broken = {f["file"] for f in manifest["files"] if f["broken"]}
files = {f["file"] for f in manifest["files"]}
failed = {os.path.basename(r["path"]) for r in report["results"] if r["status"] == "fail"}
checked = {os.path.basename(r["path"]) for r in report["results"]}
s = report["summary"]
assert report["exit_code"] == 1, report["exit_code"]
assert checked == files, f"checked {sorted(checked)}"
assert failed == broken, f"failed {sorted(failed)}, broken {sorted(broken)}"
assert s["files_failed"] == len(broken) and s["files_passed"] == len(files) - len(broken), s
assert s["unreadable"] == 0 and not report["errors"], report["errors"]
print(f"    report ok: {s['files_passed']} masks pass, {s['files_failed']} fail: {', '.join(sorted(failed))}")
EOF

MODEL=/opt/topofix/sample_data/models/demo_unet
# --always: fine-tune even a scan the model already gets right (the demo model breaks the MYO
# ring on both today), so that the optimisation loop always runs in the image.
step "topofix correct on 2 scans (2D PNG, 3D MHA stack) with the demo model, MYO prior 2=1,1"
rc=0
t=$(date +%s)
run_image correct /data/in -m "$MODEL.pt" -o /data/out/corrected --per-slice z --prior 2=1,1 \
    --steps 5 --always --html --quiet || rc=$?
echo "    exit status $rc in $(($(date +%s) - t))s"
case $rc in 0|1) ;; *) fail "topofix correct: exit status $rc (0: all meet the prior, 1: some do not)" ;; esac
python3 - "$WORK/out/corrected" "$rc" img_002.png stack_02.mha <<'EOF' || fail "correct outputs"
import csv, json, os, re, sys
out, rc, names = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
present = sorted(n for n in os.listdir(out) if not n.startswith("."))  # not the run's lock file
# --html writes the HTML report and implies --save-original (<stem>_original<ext>)
originals = [n.replace(".", "_original.", 1) for n in names]
expected = sorted(names + originals + ["topofix_report.csv", "topofix_report.json", "topofix_report.html",
                                       "topofix_journal.jsonl"])
assert present == expected, f"outputs {present}, expected {expected}"
for name in names + originals:
    assert os.path.getsize(os.path.join(out, name)) > 0, name
html = open(os.path.join(out, "topofix_report.html"), encoding="utf-8").read()
assert "<html" in html.lower() and "data:image/png;base64," in html, "HTML report without pictures"
assert not re.search(r"""(src|href)=["']?(https?:)?//""", html), "HTML report loads external files"
report = json.load(open(os.path.join(out, "topofix_report.json")))
s = report["summary"]
assert report["tool"] == "topofix correct", report["tool"]
assert report["priors"] == ["2=1,1"], report["priors"]
assert s["scans"] == 2 and s["processed"] == 2 and s["failed"] == 0, s
assert sorted(os.path.basename(c["path"]) for c in report["cases"]) == sorted(names)
assert (s["not_met"] > 0) == (rc == 1), (s, rc)
assert all(c["steps"] >= 1 for c in report["cases"]), "no optimisation step ran"
rows = list(csv.DictReader(open(os.path.join(out, "topofix_report.csv"))))
assert {os.path.basename(r["path"]) for r in rows} == set(names), rows
for c in report["cases"]:
    print(f"    {os.path.basename(c['path'])}: met before {c['met_before']}, after {c['met_after']}, "
          f"{c['steps']} steps ({c['stop_reason']}), {c['seconds']} s")
print(f"    report ok: {s}")
EOF

step "topofix predict with the ONNX demo model (onnx2torch, installed without torchvision)"
run_image predict /data/in -m "$MODEL.onnx" -o /data/out/predicted --per-slice z --quiet \
    || fail "topofix predict (ONNX)"
for name in img_002.png stack_02.mha; do
    [ -s "$WORK/out/predicted/$name" ] || fail "predict: $name not written"
done
echo "    predicted/: $(cd "$WORK/out/predicted" && echo *)"

# DICOM in, DICOM-SEG out: a synthetic CT series made in the image (its pydicom), corrected twice
# (--output-format dicom-seg with nnU-Net-style label names, and NIfTI), the SEG then read with
# pydicom alone and compared frame by frame with the NIfTI mask, and checked by `topofix check`.
step "topofix correct on a synthetic DICOM series: DICOM-SEG out, the same voxels as the NIfTI output"
cp "$ROOT/scripts/dicom_smoke.py" "$WORK/in/"
run_python() {
    local ctr rc=0
    ctr=$(buildah from --pull=never --quiet "$IMAGE")
    CONTAINERS+=("$ctr")
    show docker run --rm --network none --entrypoint python3 "$IMAGE" "$@" >&2
    unshare --net buildah run --isolation=chroot \
        --volume "$WORK/in:/data/in:ro" --volume "$WORK/out:/data/out" \
        "$ctr" -- python3 "$@" || rc=$?
    buildah rm "$ctr" >/dev/null
    return $rc
}
run_python /data/in/dicom_smoke.py make /opt/topofix/sample_data/images/img_002.png /data/out/dicom/case_01 \
    /data/out/labels.json || fail "making the DICOM series"
for format in dicom-seg nifti; do
    rc=0
    run_image correct /data/out/dicom -m "$MODEL.pt" -o "/data/out/dicom-$format" --per-slice z --prior 2=1,1 \
        --steps 5 --always --quiet --output-format "$format" --labels /data/out/labels.json || rc=$?
    case $rc in 0|1) ;; *) fail "topofix correct --output-format $format: exit status $rc" ;; esac
done
[ -s "$WORK/out/dicom-dicom-seg/case_01.dcm" ] || fail "no DICOM-SEG written"
run_python /data/in/dicom_smoke.py verify /data/out/dicom/case_01 /data/out/dicom-dicom-seg/case_01.dcm \
    /data/out/dicom-nifti/case_01.nii.gz /data/out/labels.json || fail "the DICOM-SEG"
rc=0
run_image check /data/out/dicom-dicom-seg --per-slice z --prior 2=1,1 --json /data/out/check-seg.json --quiet || rc=$?
case $rc in 0|1) ;; *) fail "topofix check on the DICOM-SEG: exit status $rc" ;; esac
python3 - "$WORK/out/check-seg.json" <<'EOF' || fail "check report of the DICOM-SEG"
import json, sys
report = json.load(open(sys.argv[1]))
assert not report["errors"], report["errors"]
assert {r["path"].rsplit("/", 1)[-1] for r in report["results"]} == {"case_01.dcm"}, report["results"]
print(f"    check on the SEG ok: {len(report['results'])} slice results")
EOF

if [ "${TOPOFIX_SMOKE_NNUNET:-0}" = 1 ]; then
    step "WITH_NNUNET=1: nnunetv2 and topofix's nnU-Net module import in the image (no network)"
    run_python -c "import nnunetv2, topofix.models.nnunet as m; print('    nnunetv2', nnunetv2.__file__)" \
        || fail "nnU-Net in the image"
fi

step "all checks passed (build ${build_s}s, image $(python3 -c "print(f'{$size / 1e9:.2f} GB')"))"
