#!/usr/bin/env bash
# Install the system (Debian/Ubuntu) packages the book and the tests need, if missing:
#   ffmpeg, sox            audio tools (musdb needs ffmpeg/ffprobe even for wav trees)
#   timgm6mb-soundfont     General MIDI SoundFont that renders the synthetic songs
#   chromium, fonts-*      headless browser for tests/test_book_pages.py
#   chromium-driver        WebDriver for it (Selenium): tests/test_widgets_frontend.py
# With --real-music, also what `make data` needs to build real multitracks (LMMS demo
# projects, MIDI files and mastered game soundtracks from Debian packages; large, and
# never needed by the book or the tests; list in diffmst_lite/data/realsongs.py).
# A quick no-op when everything is installed. Without apt-get, or without root (and no
# password-less sudo), it prints what is missing and carries on: the build or the tests
# then say what they could not find.
set -euo pipefail

packages=(ffmpeg sox timgm6mb-soundfont chromium chromium-driver fonts-liberation fonts-dejavu-core)
if [ "${1:-}" = "--real-music" ]; then
    packages+=(lmms faketime fluid-soundfont-gm musescore-general-soundfont-lossless
               openttd-openmsx simutrans-data planetblupi-music-midi warzone2100-music asc-music)
fi

installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
    echo "system packages: no apt-get here; install these yourself if missing: ${packages[*]}"
    exit 0
fi

missing=()
for p in "${packages[@]}"; do
    installed "$p" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    echo "system packages: all present (${packages[*]})"
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    sudo=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo=(sudo -n)
else
    echo "system packages: missing ${missing[*]}; not root and no password-less sudo, so skipping."
    echo "  Install them with: sudo apt-get update && sudo apt-get install -y ${missing[*]}"
    exit 0
fi

echo "system packages: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null
