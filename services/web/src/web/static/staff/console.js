/* The staff console's progressive enhancement: everything works without it. It adds the maps
   (Leaflet, clustered), "select all" in the queue, and inserting a canned response. */
(function () {
  "use strict";

  // The member's city's outline; resolves to its layer (null when it could not be had).
  function outlines(map, url) {
    return fetch(url, { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (data) {
        if (!data || !data.features.length) return null;
        return L.geoJSON(data, { style: { color: "#0b3d6b", weight: 1, fillOpacity: 0.04 }, interactive: false }).addTo(map);
      })
      .catch(function () { return null; });
  }

  function baseMap(element) {
    // Hidden without JavaScript: an empty box would be all there was.
    element.hidden = false;
    var map = L.map(element, { scrollWheelZoom: false, maxZoom: 19 });
    // The outlines are the city's open data: credited as on the citizens' maps.
    map.attributionControl.setPrefix(false);
    map.attributionControl.addAttribution(document.body.dataset.mapCredit || "");
    var tiles = element.dataset.tiles;
    if (tiles) L.tileLayer(tiles, { attribution: element.dataset.attribution || "" }).addTo(map);
    return map;
  }

  function ticketMap() {
    var element = document.getElementById("ticket-map");
    if (!element || !window.L) return;
    var at = [parseFloat(element.dataset.lat), parseFloat(element.dataset.long)];
    var map = baseMap(element);
    map.setView(at, 16);
    outlines(map, element.dataset.areas);
    L.circleMarker(at, { radius: 9, color: "#b10e1e", weight: 3, fillOpacity: 0.6 }).addTo(map);
    element.removeAttribute("role");
  }

  function queueMap() {
    var element = document.getElementById("queue-map");
    var status = document.getElementById("map-status");
    if (!element || !window.L) return;
    status.textContent = element.dataset.loading;
    var map = baseMap(element);
    map.setView([51.34, 12.37], 11);
    var outline = outlines(map, element.dataset.areas);
    fetch(element.dataset.source, { credentials: "same-origin" })
      .then(function (r) { if (!r.ok) throw new Error(r.status); return r.json(); })
      .then(function (data) {
        var cluster = L.markerClusterGroup ? L.markerClusterGroup() : L.layerGroup();
        data.features.forEach(function (f) {
          var c = f.geometry.coordinates;
          var marker = L.circleMarker([c[1], c[0]], {
            radius: 7, weight: 2, color: f.properties.overdue ? "#b10e1e" : "#0b3d6b", fillOpacity: 0.7
          });
          var link = document.createElement("a");
          link.href = f.properties.url;
          link.textContent = f.properties.title + " (" + f.properties.status + ")";
          marker.bindPopup(link);
          cluster.addLayer(marker);
        });
        map.addLayer(cluster);
        if (data.features.length) {
          map.fitBounds(L.geoJSON(data).getBounds(), { maxZoom: 16, padding: [20, 20] });
        } else {
          // No tickets: the member's city, wherever it is (not the first city's centre).
          outline.then(function (layer) { if (layer) map.fitBounds(layer.getBounds()); });
        }
        var text = element.dataset.shown.replace("{n}", data.features.length).replace("{total}", data.total);
        if (data.total > data.features.length) text += " " + element.dataset.more;
        status.textContent = text;
      })
      .catch(function (error) {
        status.textContent = element.dataset.failed;
        if (window.console) console.error(error);
      });
  }

  function selectAll() {
    var all = document.getElementById("select-all");
    if (!all) return;
    var boxes = document.querySelectorAll('input[name="ids"]');
    all.parentNode.hidden = false;
    all.addEventListener("change", function () {
      boxes.forEach(function (box) { box.checked = all.checked; });
    });
  }

  function cannedResponses() {
    var select = document.getElementById("canned");
    var note = document.getElementById("public_note");
    if (!select || !note) return;
    select.addEventListener("change", function () {
      var option = select.options[select.selectedIndex];
      if (!option || !option.dataset.body) return;
      note.value = note.value ? note.value + "\n\n" + option.dataset.body : option.dataset.body;
      select.value = "";
    });
  }

  function focusErrors() {
    var summary = document.querySelector(".error-summary");
    if (summary) summary.focus();
  }

  document.addEventListener("DOMContentLoaded", function () {
    ticketMap();
    queueMap();
    selectAll();
    cannedResponses();
    focusErrors();
  });
})();
