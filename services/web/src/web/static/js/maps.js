/* Mängelmelder maps (progressive enhancement: every page works without this file).
   Base map: the configured tile server, or, offline, the city's districts and Ortsteile from
   geo-router (served simplified by web at <city's prefix>/areas.geojson; the city's coarsest
   level, whose union is its outline, marked "outline"). */
(function () {
  "use strict";
  var MM = (window.MM = window.MM || {});
  var LEIPZIG = [51.34, 12.37];
  var outlines = null;
  /* Links and requests stay within the city's prefix ("" or "/koeln"). */
  MM.base = document.body.dataset.base || "";

  /* The city's centre, from its bounding box (min long, min lat, max long, max lat). */
  function cityCentre() {
    var box = (document.body.dataset.bbox || "").split(",").map(parseFloat);
    if (box.length !== 4 || box.some(isNaN)) return LEIPZIG;
    return [(box[1] + box[3]) / 2, (box[0] + box[2]) / 2];
  }

  MM.outlines = function () {
    if (!outlines) {
      outlines = fetch(MM.base + "/areas.geojson", { credentials: "same-origin" }).then(function (r) {
        if (!r.ok) throw new Error("areas " + r.status);
        return r.json();
      });
    }
    return outlines;
  };

  function inRing(x, y, ring) {
    var inside = false;
    for (var i = 0, j = ring.length - 1; i < ring.length; j = i++) {
      var xi = ring[i][0], yi = ring[i][1], xj = ring[j][0], yj = ring[j][1];
      if ((yi > y) !== (yj > y) && x < ((xj - xi) * (y - yi)) / (yj - yi) + xi) inside = !inside;
    }
    return inside;
  }

  /* Whether a point lies in one of the city's districts (the city outline). */
  MM.inCity = function (areas, lat, lng) {
    return areas.features.some(function (f) {
      if (!f.properties.outline) return false;
      return f.geometry.coordinates.some(function (polygon) {
        if (!inRing(lng, lat, polygon[0])) return false;
        return !polygon.slice(1).some(function (hole) { return inRing(lng, lat, hole); });
      });
    });
  };

  MM.baseMap = function (element, options) {
    element.hidden = false;
    var body = document.body;
    var map = L.map(element, Object.assign({ center: cityCentre(), zoom: 12, minZoom: 9, maxZoom: 19, zoomSnap: 0.25 }, options || {}));
    map.attributionControl.setPrefix(false);
    if (body.dataset.tileUrl) {
      L.tileLayer(body.dataset.tileUrl, { attribution: body.dataset.tileAttribution || "", maxZoom: 19 }).addTo(map);
    }
    var ready = MM.outlines().then(function (areas) {
      var tiles = Boolean(body.dataset.tileUrl);
      L.geoJSON(areas, {
        interactive: false,
        style: function (f) {
          var district = Boolean(f.properties.outline);
          return {
            color: district ? "#0b3d6b" : "#6f777b",
            weight: district ? 2 : 1,
            dashArray: district ? null : "3 4",
            fill: district && !tiles,
            fillColor: "#ffffff",
            fillOpacity: 1,
          };
        },
        filter: function (f) { return tiles ? Boolean(f.properties.outline) : true; },
      }).addTo(map);
      map.attributionControl.addAttribution(document.body.dataset.mapCredit || "");
      if (options && options.fitCity) {
        var districts = areas.features.filter(function (f) { return f.properties.outline; });
        map.fitBounds(L.geoJSON({ type: "FeatureCollection", features: districts }).getBounds());
      }
      return areas;
    });
    return { map: map, ready: ready };
  };

  function reportMap(element) {
    var lat = parseFloat(element.dataset.lat), lng = parseFloat(element.dataset.long);
    var made = MM.baseMap(element, { center: [lat, lng], zoom: 15, scrollWheelZoom: false });
    L.marker([lat, lng], { keyboard: false, alt: "" }).addTo(made.map);
  }

  function reportsMap(element) {
    var made = MM.baseMap(element, { zoom: 11, fitCity: true });
    fetch(element.dataset.geojson, { credentials: "same-origin" })
      .then(function (r) { return r.json(); })
      .then(function (data) {
        var group = L.markerClusterGroup ? L.markerClusterGroup({ showCoverageOnHover: false }) : L.layerGroup();
        data.features.forEach(function (f) {
          var c = f.geometry.coordinates, p = f.properties;
          var box = document.createElement("div");
          var link = document.createElement("a");
          link.href = MM.base + "/reports/" + p.id;
          link.textContent = p.category;
          var meta = document.createElement("div");
          meta.textContent = p.status_label + " · " + p.when;
          box.appendChild(link);
          box.appendChild(meta);
          L.marker([c[1], c[0]], { alt: p.category + ", " + p.status_label }).bindPopup(box).addTo(group);
        });
        group.addTo(made.map);
      });
  }

  function start() {
    document.querySelectorAll(".js-only").forEach(function (el) { el.hidden = false; });
    var single = document.getElementById("report-map");
    if (single) reportMap(single);
    var many = document.getElementById("reports-map");
    if (many) reportsMap(many);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
