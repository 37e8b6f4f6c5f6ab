#!/usr/bin/env bash
# Download, unpack and check UCF101 with its official train/test splits (TCLR_SPEC section 8).
#
#   scripts/prepare_ucf101.sh [--root DIR | DIR] [--archives DIR] [--offline] [--skip-decode-check]
#                             [--workers N] [--dry-run]
#
# Result (the layout dataloaders/splits.py reads; pass DIR as --data-root):
#   DIR/UCF-101/<Class>/v_<Class>_gXX_cYY.avi      13,320 videos in 101 classes
#   DIR/ucfTrainTestlist/{classInd,trainlist0[123],testlist0[123]}.txt
#   DIR/preflight_check.json                         report of the decode check
# Steps: download the two archives into --archives (default DIR/_archives) unless they are already
# there (so a folder of archives fetched elsewhere makes this an offline run); unpack them (RAR:
# unrar, 7z or unar); compare with the official counts (scripts/verify_dataset_counts.py); decode
# every video once (python -m dataloaders.check). Exits non-zero on any mismatch. Rerunning skips
# finished steps. The archive is 6.5 GB; unpacked, the dataset takes about 7 GB.
# --dry-run prints the commands and changes nothing. DIR defaults to data/ucf101.
# Environment: UCF101_URL, UCF101_SPLITS_URL (a mirror); DOWNLOAD_OPTS (extra curl/wget options);
# RAR_TOOL (unrar, 7z, 7zz, 7za or unar); VERIFY_COUNTS_OPTS (--expect-* options of
# scripts/verify_dataset_counts.py, for a copy that is not the official release).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_lib.sh"

UCF101_URL=${UCF101_URL:-https://www.crcv.ucf.edu/data/UCF101/UCF101.rar}
UCF101_SPLITS_URL=${UCF101_SPLITS_URL:-https://www.crcv.ucf.edu/data/UCF101/UCF101TrainTestSplits-RecognitionTask.zip}
VIDEOS_ARCHIVE=UCF101.rar
SPLITS_ARCHIVE=UCF101TrainTestSplits-RecognitionTask.zip

prepare_usage() {
    usage_from_header "${BASH_SOURCE[0]}"
}

parse_prepare_args ucf101 "$@"
info "UCF101 into $ROOT (archives: $ARCHIVES)$([[ $DRY_RUN == 1 ]] && echo ' [dry run]')"

# Parts already unpacked earlier (marker), or unpacked by hand with no archive here: left alone.
need_videos=1
need_splits=1
if already_there "$VIDEOS_ARCHIVE" "$ROOT/UCF-101"; then
    info "videos already in $ROOT/UCF-101"
    need_videos=0
fi
if already_there "$SPLITS_ARCHIVE" "$ROOT/ucfTrainTestlist"; then
    info "split files already in $ROOT/ucfTrainTestlist"
    need_splits=0
fi

if (( need_videos || need_splits )); then
    (( need_videos )) && require_rar_tool      # before downloading 6.5 GB
    prepare_dirs
fi
if (( need_videos )); then
    fetch "$UCF101_URL" "$ARCHIVES/$VIDEOS_ARCHIVE"
    unpack_once "$ARCHIVES/$VIDEOS_ARCHIVE" "$ROOT" "$MARKS/$VIDEOS_ARCHIVE.done"
fi
if (( need_splits )); then
    fetch "$UCF101_SPLITS_URL" "$ARCHIVES/$SPLITS_ARCHIVE"
    unpack_once "$ARCHIVES/$SPLITS_ARCHIVE" "$ROOT" "$MARKS/$SPLITS_ARCHIVE.done"
fi

# Split 1's train + test lists name every video once (checked by the counts), so this decodes all.
verify_dataset ucf101 --dataset ucf101 --root "$ROOT" --split 1 --subset all
