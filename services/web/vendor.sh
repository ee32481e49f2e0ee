#!/bin/sh
# Copies the npm-installed front-end libraries (pinned by package-lock.json) to where web serves
# them: vendor.sh NODE_MODULES TARGET. Pages load nothing from a CDN.
set -eu
modules=$1
target=$2
mkdir -p "$target/leaflet/images" "$target/leaflet.markercluster"
cp "$modules/leaflet/dist/leaflet.js" "$modules/leaflet/dist/leaflet.css" "$modules/leaflet/LICENSE" "$target/leaflet/"
cp "$modules/leaflet/dist/images/"*.png "$target/leaflet/images/"
cp "$modules/leaflet.markercluster/dist/leaflet.markercluster.js" \
   "$modules/leaflet.markercluster/dist/MarkerCluster.css" \
   "$modules/leaflet.markercluster/dist/MarkerCluster.Default.css" \
   "$modules/leaflet.markercluster/MIT-LICENCE.txt" "$target/leaflet.markercluster/"
