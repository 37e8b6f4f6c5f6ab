# Helpers shared by the workflow scripts (prepare_*.sh, eval_*.sh, reproduce_paper.sh).
# Sourced, never run. Conventions:
#   DRY_RUN=1   every command is printed ("+ cmd ...") and nothing runs or is created;
#   PYTHON      the Python interpreter (default: python); TORCHRUN the torchrun launcher;
#   progress lines start with "==", commands with "+", errors go to stderr as "error: ...".

TCLR_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-python}
TORCHRUN=${TORCHRUN:-torchrun}
DRY_RUN=${DRY_RUN:-0}

die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

info() {
    printf '== %s\n' "$*"
}

# show CMD...: print a command as a shell would read it back.
show() {
    local line="+" word
    for word in "$@"; do
        line+=" $(printf '%q' "$word")"
    done
    printf '%s\n' "$line"
}

# run CMD...: print, then run unless DRY_RUN=1.
run() {
    show "$@"
    [[ $DRY_RUN == 1 ]] && return 0
    "$@"
}

is_uint() {
    [[ $1 =~ ^[0-9]+$ ]]
}

# need_value OPTION ARGC: die unless an option that takes a value got one.
need_value() {
    (( $2 >= 2 )) || die "option $1 needs a value"
}

# split_eq "OPTIONS" WORD: true when WORD is --opt=value for one of the space-separated OPTIONS
# (the options that take a value); sets EQ_SPLIT=(--opt value). Every parse loop starts with
#   split_eq "--out --epochs" "$1" && set -- "${EQ_SPLIT[@]}" "${@:2}"
# so that --out=DIR reads as --out DIR. Other words, such as entry-point flags passed on, stay
# as they are (the entry points take --flag=value themselves).
split_eq() {
    local name=${2%%=*}
    [[ $2 == --?*=* && " $1 " == *" $name "* ]] || return 1
    EQ_SPLIT=("$name" "${2#*=}")
}

# entry FILE: a repository file as the commands should name it (relative when run from the repo).
entry() {
    if [[ $PWD == "$TCLR_REPO" ]]; then
        printf '%s\n' "$1"
    else
        printf '%s\n' "$TCLR_REPO/$1"
    fi
}

# set_launcher GPUS: LAUNCH = the command prefix that starts a training script on GPUS processes
# (torchrun --standalone on one machine for GPUS > 1, plain python otherwise).
set_launcher() {
    is_uint "$1" && (( $1 >= 1 )) || die "--gpus must be a positive integer, got '$1'"
    if (( $1 > 1 )); then
        LAUNCH=("$TORCHRUN" --standalone --nproc_per_node "$1")
    else
        LAUNCH=("$PYTHON")
    fi
}

# set_pymodule MODULE: PYMOD = the command prefix that runs `python -m MODULE` of this repository.
set_pymodule() {
    if [[ $PWD == "$TCLR_REPO" ]]; then
        PYMOD=("$PYTHON" -m "$1")
    else
        PYMOD=(env "PYTHONPATH=$TCLR_REPO${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" -m "$1")
    fi
}

# ---------------------------------------------------------------------------------------------
# Downloading and unpacking (prepare_*.sh)
# ---------------------------------------------------------------------------------------------

# fetch URL FILE: download URL to FILE unless FILE is already there (a partial FILE.part resumes).
# DOWNLOAD_OPTS adds options to curl/wget (e.g. DOWNLOAD_OPTS=--insecure when a server's
# certificate has expired and you trust the network).
fetch() {
    local url=$1 file=$2
    if [[ -f $file ]]; then
        info "found $file: no download"
        return 0
    fi
    [[ ${OFFLINE:-0} == 1 ]] && die "$file is missing and --offline was given; download $url" \
        "there, or pass --archives DIR naming the folder that holds it"
    local -a opts=()
    read -r -a opts <<< "${DOWNLOAD_OPTS:-}"
    if command -v curl > /dev/null || [[ $DRY_RUN == 1 ]]; then
        run curl -fL --retry 3 -C - ${opts[@]+"${opts[@]}"} -o "$file.part" "$url" \
            || die "download of $url failed; rerun to resume, or download it yourself into" \
                   "$(dirname "$file")/ (browser, another machine) and pass --archives"
    elif command -v wget > /dev/null; then
        run wget -c ${opts[@]+"${opts[@]}"} -O "$file.part" "$url" \
            || die "download of $url failed; rerun to resume, or download it yourself into" \
                   "$(dirname "$file")/ and pass --archives"
    else
        die "neither curl nor wget is installed; install one (apt-get install curl) or download" \
            "$url into $(dirname "$file")/ yourself and pass --archives $(dirname "$file")"
    fi
    run mv "$file.part" "$file"
}

# rar_tool: the first installed program that unpacks RAR archives.
rar_tool() {
    local tool
    for tool in ${RAR_TOOL:-} unrar 7z 7zz 7za unar; do
        if command -v "$tool" > /dev/null; then
            printf '%s\n' "$tool"
            return 0
        fi
    done
    return 1
}

RAR_HELP="no program to unpack RAR archives was found. Install one of:
  unrar  (Debian/Ubuntu: apt-get install unrar [non-free]; Fedora: dnf install unrar;
          macOS: brew install rar)
  7-Zip  (Debian/Ubuntu: apt-get install 7zip, or p7zip-full p7zip-rar;
          conda: conda install -c conda-forge p7zip)
  unar   (Debian/Ubuntu: apt-get install unar; macOS: brew install unar)
or name one with RAR_TOOL=... (note: unrar-free fails on some RAR versions)."

# require_rar_tool: die (before any download) when no RAR program is installed; a dry run only
# warns and shows the commands with unrar.
require_rar_tool() {
    if ! RAR=$(rar_tool); then
        if [[ $DRY_RUN == 1 ]]; then
            printf 'warning: %s\n' "$RAR_HELP" >&2
            RAR=unrar
        else
            die "$RAR_HELP"
        fi
    fi
}

# unpack ARCHIVE DEST: unpack a .rar or .zip archive into DEST, keeping the archive's folders.
unpack() {
    local archive=$1 dest=$2
    if [[ $DRY_RUN != 1 && ! -s $archive ]]; then
        die "$archive is missing or empty"
    fi
    [[ -d $dest ]] || run mkdir -p "$dest"
    case $archive in
        *.zip)
            if command -v unzip > /dev/null; then
                run unzip -q -o "$archive" -d "$dest"
            else
                run "$PYTHON" -m zipfile -e "$archive" "$dest"
            fi ;;
        *.rar)
            case $RAR in
                unrar) run unrar x -o+ -idq "$archive" "$dest/" ;;
                7z | 7zz | 7za) run "$RAR" x -y -bd "-o$dest" "$archive" ;;
                unar) run unar -q -f -D -o "$dest" "$archive" ;;
                *) die "RAR_TOOL=$RAR is not one of unrar, 7z, 7zz, 7za, unar" ;;
            esac ;;
        *) die "do not know how to unpack $archive (expected .rar or .zip)" ;;
    esac || die "unpacking $archive failed: a partial download? Delete it and rerun to" \
                "download it again, or check its checksum against the site's"
}

# unpack_once ARCHIVE DEST MARKER: unpack unless MARKER says it was done; MARKER is written after.
unpack_once() {
    local archive=$1 dest=$2 marker=$3
    if [[ -f $marker ]]; then
        info "$(basename "$archive") already unpacked into $dest (delete $marker to redo)"
        return 0
    fi
    info "unpacking $(basename "$archive") into $dest"
    unpack "$archive" "$dest"
    run touch "$marker"
}

# parse_prepare_args DATASET ARGS...: the options every prepare_*.sh takes. Sets ROOT, ARCHIVES,
# MARKS (folder of "unpacked" markers), DRY_RUN, OFFLINE, DECODE_CHECK, CHECK_WORKERS.
parse_prepare_args() {
    local dataset=$1
    shift
    ROOT="" ARCHIVES="" OFFLINE=0 DECODE_CHECK=1 CHECK_WORKERS=""
    while (( $# )); do
        split_eq "--root --archives --workers" "$1" && set -- "${EQ_SPLIT[@]}" "${@:2}"
        case $1 in
            --root) need_value "$1" $#; ROOT=$2; shift 2 ;;
            --archives) need_value "$1" $#; ARCHIVES=$2; shift 2 ;;
            --dry-run) DRY_RUN=1; shift ;;
            --offline) OFFLINE=1; shift ;;
            --skip-decode-check) DECODE_CHECK=0; shift ;;
            --workers) need_value "$1" $#; CHECK_WORKERS=$2; shift 2 ;;
            -h | --help) prepare_usage; exit 0 ;;
            -*) die "unknown option $1 (see --help)" ;;
            *) [[ -z $ROOT ]] || die "two dataset roots given: $ROOT and $1"; ROOT=$1; shift ;;
        esac
    done
    ROOT=${ROOT:-data/$dataset}
    ARCHIVES=${ARCHIVES:-$ROOT/_archives}
    MARKS=$ROOT/.prepare
    [[ -z $CHECK_WORKERS ]] || is_uint "$CHECK_WORKERS" || die "--workers must be a number"
}

# usage_from_header FILE: the comment block at the top of a script, without the "# ".
usage_from_header() {
    awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "$1"
}

# have_archive NAME: true when ARCHIVES/NAME exists.
have_archive() {
    [[ -f $ARCHIVES/$1 ]]
}

# already_there ARCHIVE FOLDER: the archive was unpacked by an earlier run (marker), or there is
# no archive but FOLDER is already filled (unpacked by hand): nothing to download or unpack.
already_there() {
    [[ -f $MARKS/$1.done ]] || { ! have_archive "$1" && [[ -n $(ls -A "$2" 2> /dev/null) ]]; }
}

# prepare_dirs: create the dataset root, the archive folder and the marker folder.
prepare_dirs() {
    run mkdir -p "$ROOT" "$ARCHIVES" "$MARKS"
}

# verify_dataset DATASET DECODE_CHECK_ARGS...: counts against the official ones, then (unless
# --skip-decode-check) the preflight decode check with the given dataloaders.check arguments.
# VERIFY_COUNTS_OPTS adds options to verify_dataset_counts.py (--expect-videos N ... for a copy
# that is not the official release, e.g. the tests' small synthetic one).
verify_dataset() {
    local dataset=$1
    shift
    local -a expect=()
    read -r -a expect <<< "${VERIFY_COUNTS_OPTS:-}"
    info "comparing $ROOT with the official $dataset counts"
    run "$PYTHON" "$(entry scripts/verify_dataset_counts.py)" --dataset "$dataset" --root "$ROOT" \
        ${expect[@]+"${expect[@]}"} \
        || die "$ROOT does not match the official $dataset release (see above). An interrupted" \
               "unpack? Delete $MARKS and rerun; or check the archives' checksums."
    if [[ $DECODE_CHECK == 0 ]]; then
        info "skipping the decode check (--skip-decode-check)"
        return 0
    fi
    info "preflight: decoding every video (python -m dataloaders.check; minutes)"
    set_pymodule dataloaders.check
    local -a workers=()
    [[ -z $CHECK_WORKERS ]] || workers=(--workers "$CHECK_WORKERS")
    run "${PYMOD[@]}" "$@" ${workers[@]+"${workers[@]}"} --json "$ROOT/preflight_check.json" \
        || die "some videos under $ROOT are missing or cannot be decoded (see above and" \
               "$ROOT/preflight_check.json); re-unpack them, or check the OpenCV/FFmpeg build" \
               "(python -c 'import cv2; print(cv2.getBuildInformation())')"
    info "$dataset is ready under $ROOT"
}

# ---------------------------------------------------------------------------------------------
# Demo-scale evaluation (learning_demo.sh and demo.sh through it, mini_ablation.sh)
# ---------------------------------------------------------------------------------------------

# The linear probe of the CPU demos is the preset demo_linear (config.DEMO_LINEAR_PROBE on top of
# the demo preset): mini_ablation.sh passes --preset demo_linear. DEMO_LINEAR_ARGS is the same
# probe as flags, for a script that layers it on another preset (learning_demo.sh, on `learning`:
# a second --preset would replace that preset's data); tests/test_demo_scripts.py checks both
# resolve alike.
DEMO_LINEAR_ARGS=(--bn-mode train --select last --val-fraction 0 --num-test-clips 3)
