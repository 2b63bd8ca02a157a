#!/usr/bin/env bash
# Extra training photos from Debian's wallpaper packages: 37 photographs (landscapes, close-ups, night, fog,
# sunsets), the only photo source reachable from a machine that sees nothing but the package registries.
# fip never ships them; models trained on them record it in their docs (docs/models.md).
#
# Usage: bash scripts/debian_photos.sh OUTDIR      (needs apt-get; writes OUTDIR/NAME.jpg, skips existing files)
# Then:  fip train -c train/configs/OPERATOR.yaml --data.source OUTDIR --data.val_resolution 480p
set -euo pipefail
out=${1:?usage: bash scripts/debian_photos.sh OUTDIR}
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

packages=(plasma-workspace-wallpapers lomiri-wallpapers-16.04 lomiri-wallpapers-20.04 mate-backgrounds)
# NAME  PATH-IN-PACKAGE, or a Plasma wallpaper's images/ folder (its largest size is taken) (licences: each package's /usr/share/doc/*/copyright; CC BY-SA, GPL, LGPL)
photos="
BytheWater     usr/share/wallpapers/BytheWater/contents/images/
ColdRipple     usr/share/wallpapers/ColdRipple/contents/images/
DarkestHour    usr/share/wallpapers/DarkestHour/contents/images/
EveningGlow    usr/share/wallpapers/EveningGlow/contents/images/
FallenLeaf     usr/share/wallpapers/FallenLeaf/contents/images/
Grey           usr/share/wallpapers/Grey/contents/images/
Kite           usr/share/wallpapers/Kite/contents/images/
OneStandsOut   usr/share/wallpapers/OneStandsOut/contents/images/
Path           usr/share/wallpapers/Path/contents/images/
Volna          usr/share/wallpapers/Volna/contents/images/
summer_1am     usr/share/wallpapers/summer_1am/contents/images/
Bridge         usr/share/backgrounds/Bridge_by_Sander_Klootwijk.jpg
Dragonfly      usr/share/backgrounds/Dragonfly_by_Bolly.jpg
Fig            usr/share/backgrounds/Picture_0B_by_freespace.jpg
Brushes        usr/share/backgrounds/Picture_1A_by_freespace.jpg
Wine           usr/share/backgrounds/Wine_by_Jakkub_Mede.jpg
Aitzgorri      usr/share/backgrounds/aitzgorri_by_Aitzol_Berasategi.jpg
Free           usr/share/backgrounds/free_by_Peter_Nerlich.jpg
Friends        usr/share/backgrounds/friends_by_Aitzol_Berasategi.jpg
Greentock      usr/share/backgrounds/greentock_by_Peter_Nerlich.jpg
Life           usr/share/backgrounds/life_by_Aitzol_Berasategi.jpg
PicosDeEuropa  usr/share/backgrounds/picosdeeuropa_by_Aitzol_Berasategi.jpg
Seeding        usr/share/backgrounds/seeding_by_Clements_Engelhardt.jpg
Sunset         usr/share/backgrounds/sunset_by_Aitzol_Berasategi.jpg
Kleiber        usr/share/backgrounds/Kleiber_by_Lukas_Baubkus.jpg
Aqua           usr/share/backgrounds/mate/nature/Aqua.jpg
Blinds         usr/share/backgrounds/mate/nature/Blinds.jpg
Dune           usr/share/backgrounds/mate/nature/Dune.jpg
FreshFlower    usr/share/backgrounds/mate/nature/FreshFlower.jpg
Garden         usr/share/backgrounds/mate/nature/Garden.jpg
GreenMeadow    usr/share/backgrounds/mate/nature/GreenMeadow.jpg
LadyBird       usr/share/backgrounds/mate/nature/LadyBird.jpg
RainDrops      usr/share/backgrounds/mate/nature/RainDrops.jpg
Storm          usr/share/backgrounds/mate/nature/Storm.jpg
TwoWings       usr/share/backgrounds/mate/nature/TwoWings.jpg
Wood           usr/share/backgrounds/mate/nature/Wood.jpg
YellowFlower   usr/share/backgrounds/mate/nature/YellowFlower.jpg
"

missing=0
while read -r name path; do
  [ -n "$name" ] && [ ! -e "$out/$name.jpg" ] && missing=1
done <<< "$photos"
if [ "$missing" = 0 ]; then
  echo "debian_photos: $out already holds every photo"
  exit 0
fi

for package in "${packages[@]}"; do  # one at a time: a package this release lacks costs only its photos
  (cd "$work" && apt-get download "$package") ||
    echo "debian_photos: apt-get could not download $package (not in this release, or run 'apt-get update' first); its photos are skipped" >&2
done
if ! ls "$work"/*.deb > /dev/null 2>&1; then
  echo "debian_photos: no package downloaded; run 'apt-get update' first (as root) and retry" >&2
  exit 1
fi
for deb in "$work"/*.deb; do dpkg-deb -x "$deb" "$work/root"; done
count=0
while read -r name path; do
  [ -z "$name" ] && continue
  [ -e "$out/$name.jpg" ] && continue
  if [ "${path%/}" != "$path" ] && [ -d "$work/root/$path" ]; then
    # Plasma keeps one file per screen size, named WIDTHxHEIGHT.jpg: take the most pixels
    path="$path$(ls "$work/root/$path" | grep -E '^[0-9]+x[0-9]+\.jpg$' |
      awk -Fx '{ split($2, h, "."); print $1 * h[1], $0 }' | sort -n | tail -1 | cut -d' ' -f2)"
  fi
  if [ ! -f "$work/root/$path" ]; then
    echo "debian_photos: $path is not in this version of the packages; skipping $name" >&2
    continue
  fi
  cp "$work/root/$path" "$out/.$name.jpg.part"
  mv "$out/.$name.jpg.part" "$out/$name.jpg"
  count=$((count + 1))
done <<< "$photos"
echo "debian_photos: wrote $count photos to $out"
