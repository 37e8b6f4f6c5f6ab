#!/usr/bin/env bash
# Download, unpack and check HMDB51 with its official three splits (TCLR_SPEC section 8).
#
#   scripts/prepare_hmdb51.sh [--root DIR | DIR] [--archives DIR] [--offline] [--skip-decode-check]
#                             [--workers N] [--dry-run]
#
# Result (the layout dataloaders/splits.py reads; pass DIR as --data-root):
#   DIR/<class>/<video>.avi                                  6,766 videos in 51 classes
#   DIR/testTrainMulti_7030_splits/<class>_test_split[123].txt
#   DIR/preflight_check.json                                 report of the decode check
# Steps: download hmdb51_org.rar (a RAR of 51 per-class RARs) and test_train_splits.rar into
# --archives (default DIR/_archives) unless they are already there (so a folder of archives
# fetched elsewhere makes this an offline run); unpack them (unrar, 7z or unar); compare with the
# official counts (scripts/verify_dataset_counts.py); decode every video once
# (python -m dataloaders.check). Exits non-zero on any mismatch. Rerunning skips finished steps.
# The archive is about 2 GB. --dry-run prints the commands and changes nothing. DIR defaults to
# data/hmdb51. Environment: HMDB51_URL, HMDB51_SPLITS_URL (a mirror); DOWNLOAD_OPTS (extra
# curl/wget options); RAR_TOOL (unrar, 7z, 7zz, 7za or unar); VERIFY_COUNTS_OPTS (--expect-*
# options of scripts/verify_dataset_counts.py, for a copy that is not the official release).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_lib.sh"

HMDB51_URL=${HMDB51_URL:-https://serre-lab.clps.brown.edu/wp-content/uploads/2013/10/hmdb51_org.rar}
HMDB51_SPLITS_URL=${HMDB51_SPLITS_URL:-https://serre-lab.clps.brown.edu/wp-content/uploads/2013/10/test_train_splits.rar}
VIDEOS_ARCHIVE=hmdb51_org.rar
SPLITS_ARCHIVE=test_train_splits.rar
SPLIT_DIR=testTrainMulti_7030_splits

prepare_usage() {
    usage_from_header "${BASH_SOURCE[0]}"
}

# has_class_videos DIR: some folder directly under DIR holds .avi files.
has_class_videos() {
    compgen -G "$1/*/*.avi" > /dev/null
}

# unpack_class_archives: hmdb51_org.rar holds one RAR per class; each unpacks to DIR/<class>/.
unpack_class_archives() {
    local inner=$ARCHIVES/hmdb51_class_rars archive count=0
    unpack_once "$ARCHIVES/$VIDEOS_ARCHIVE" "$inner" "$MARKS/$VIDEOS_ARCHIVE.inner.done"
    if [[ -f $MARKS/$VIDEOS_ARCHIVE.done ]]; then
        return 0
    fi
    info "unpacking the per-class archives into $ROOT"
    if [[ $DRY_RUN == 1 ]] && ! compgen -G "$inner/*.rar" > /dev/null; then
        unpack "$inner/<class>.rar" "$ROOT"
        info "(... and so on for each of the 51 class archives)"
    else
        for archive in "$inner"/*.rar; do
            [[ -f $archive ]] || die "$ARCHIVES/$VIDEOS_ARCHIVE held no per-class .rar files"
            unpack "$archive" "$ROOT"
            count=$((count + 1))
        done
        info "unpacked $count class archives"
    fi
    run touch "$MARKS/$VIDEOS_ARCHIVE.done"
    run rm -rf "$inner"          # 2 GB of intermediate files, re-made from the archive if needed
}

parse_prepare_args hmdb51 "$@"
info "HMDB51 into $ROOT (archives: $ARCHIVES)$([[ $DRY_RUN == 1 ]] && echo ' [dry run]')"

# Parts already unpacked earlier (marker), or unpacked by hand with no archive here: left alone.
need_videos=1
need_splits=1
if [[ -f $MARKS/$VIDEOS_ARCHIVE.done ]] \
        || { ! have_archive "$VIDEOS_ARCHIVE" && has_class_videos "$ROOT"; }; then
    info "videos already in $ROOT/<class>/"
    need_videos=0
fi
if already_there "$SPLITS_ARCHIVE" "$ROOT/$SPLIT_DIR"; then
    info "split files already in $ROOT/$SPLIT_DIR"
    need_splits=0
fi

if (( need_videos || need_splits )); then
    require_rar_tool                  # both archives are RAR; fail before downloading
    prepare_dirs
fi
if (( need_videos )); then
    fetch "$HMDB51_URL" "$ARCHIVES/$VIDEOS_ARCHIVE"
    unpack_class_archives
fi
if (( need_splits )); then
    fetch "$HMDB51_SPLITS_URL" "$ARCHIVES/$SPLITS_ARCHIVE"
    unpack_once "$ARCHIVES/$SPLITS_ARCHIVE" "$ROOT" "$MARKS/$SPLITS_ARCHIVE.done"
fi

# The split files leave some videos unused (id 0): decode every video on disk instead.
verify_dataset hmdb51 --dataset folder --root "$ROOT" --subset all
