/* The report form's enhancements: the map pin with the city check, "use my location",
   duplicate hints before sending, category questions, and photos scaled to ≤ 2,000 px. */
(function () {
  "use strict";
  var form = document.getElementById("report-form");
  if (!form) return;
  var category = document.getElementById("service_code");

  /* The chosen category's questions only; the others' fields are not sent. The page's CSS
     already shows only the chosen one's (is-chosen) when scripting is on: no layout shift.
     Before the map's check, so that the questions work even when the map cannot. */
  function showQuestions() {
    document.querySelectorAll("fieldset.attributes").forEach(function (set) {
      var mine = set.dataset.category === category.value;
      set.hidden = !mine;
      set.classList.toggle("is-chosen", mine);
      set.querySelectorAll("input, select, textarea").forEach(function (i) { i.disabled = !mine; });
    });
  }
  category.addEventListener("change", showQuestions);
  showQuestions();
  if (!window.L) return;
  var MM = window.MM;
  var text = form.dataset;
  var lat = document.getElementById("lat"), lng = document.getElementById("long");
  var status = document.getElementById("place-status");
  var mapElement = document.getElementById("form-map");
  var made = MM.baseMap(mapElement, { zoom: 12, fitCity: !lat.value });
  var map = made.map, marker = null, areas = null;
  document.getElementById("place-hint").hidden = true;

  made.ready.then(function (a) { areas = a; if (pinned()) check(pinned()); });

  function pinned() {
    var la = parseFloat((lat.value || "").replace(",", ".")), lo = parseFloat((lng.value || "").replace(",", "."));
    return isNaN(la) || isNaN(lo) ? null : L.latLng(la, lo);
  }

  function say(message, outside) {
    status.textContent = message;
    status.classList.toggle("is-outside", Boolean(outside));
  }

  function check(point) {
    if (!areas) return;
    if (MM.inCity(areas, point.lat, point.lng)) say(text.insideMessage, false);
    else say(text.outsideMessage, true);
  }

  function setPin(point, fromFields) {
    if (!marker) {
      marker = L.marker(point, { draggable: true, autoPan: true, alt: text.pinMessage }).addTo(map);
      marker.on("dragend", function () { setPin(marker.getLatLng()); });
    } else {
      marker.setLatLng(point);
    }
    if (!fromFields) {
      lat.value = point.lat.toFixed(6);
      lng.value = point.lng.toFixed(6);
    }
    check(point);
    lookForDuplicates();
  }

  map.on("click", function (e) { setPin(e.latlng); });
  mapElement.addEventListener("keydown", function (e) {
    if (e.key === "Enter" && e.target === mapElement) { e.preventDefault(); setPin(map.getCenter()); }
  });
  [lat, lng].forEach(function (input) {
    input.addEventListener("change", function () {
      var p = pinned();
      if (p) { setPin(p, true); map.setView(p, Math.max(map.getZoom(), 15)); }
    });
  });
  if (pinned()) { setPin(pinned(), true); map.setView(pinned(), 16); }

  document.getElementById("pin-centre").addEventListener("click", function () { setPin(map.getCenter()); });
  var locate = document.getElementById("locate");
  if (!navigator.geolocation) locate.hidden = true;
  locate.addEventListener("click", function () {
    say(text.locatingMessage, false);
    navigator.geolocation.getCurrentPosition(
      function (pos) {
        var p = L.latLng(pos.coords.latitude, pos.coords.longitude);
        map.setView(p, 17);
        setPin(p);
      },
      function () { say(text.locationFailed, true); },
      { enableHighAccuracy: true, timeout: 15000, maximumAge: 60000 }
    );
  });

  category.addEventListener("change", function () { lookForDuplicates(); });

  /* Open reports of the same kind close by, before sending. */
  var nearby = document.getElementById("nearby");
  var nearbyList = document.getElementById("nearby-list");
  var acknowledged = document.getElementById("acknowledge_duplicate");
  var lastQuery = "";
  function lookForDuplicates() {
    var p = pinned();
    if (!p || !category.value) { nearby.hidden = true; return; }
    var query = "service_code=" + encodeURIComponent(category.value) + "&lat=" + p.lat.toFixed(6) + "&long=" + p.lng.toFixed(6);
    if (query === lastQuery) return;
    lastQuery = query;
    fetch(MM.base + "/nearby.json?" + query, { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : { reports: [] }; })
      .then(function (data) {
        if (query !== lastQuery) return;
        showDuplicates(data.reports || []);
      })
      .catch(function () { nearby.hidden = true; });
  }

  function follow(reportId) {
    var f = document.createElement("form");
    f.method = "post";
    f.action = MM.base + "/reports/" + reportId + "/follow";
    [["csrf_token", form.elements.csrf_token.value], ["email", form.elements.email.value], ["name", form.elements.name.value]].forEach(function (pair) {
      var input = document.createElement("input");
      input.type = "hidden";
      input.name = pair[0];
      input.value = pair[1];
      f.appendChild(input);
    });
    document.body.appendChild(f);
    f.submit();
  }

  function showDuplicates(reports) {
    nearbyList.textContent = "";
    if (!reports.length) { nearby.hidden = true; acknowledged.value = ""; return; }
    acknowledged.value = "";
    reports.forEach(function (r) {
      var li = document.createElement("li");
      var title = document.createElement("strong");
      title.textContent = r.category + " – " + r.status_label;
      var meta = document.createElement("span");
      meta.className = "meta";
      meta.textContent = nearby.dataset.distance.replace("{metres}", r.distance_m) + " · " + r.when;
      li.appendChild(title);
      li.appendChild(meta);
      if (r.description) {
        var d = document.createElement("p");
        d.textContent = r.description.length > 160 ? r.description.slice(0, 157) + "…" : r.description;
        li.appendChild(d);
      }
      var view = document.createElement("a");
      view.href = MM.base + "/reports/" + r.id;
      view.textContent = nearby.dataset.view;
      view.setAttribute("aria-label", nearby.dataset.view + ": " + r.category + ", " + meta.textContent);
      var p = document.createElement("p");
      p.appendChild(view);
      li.appendChild(p);
      var button = document.createElement("button");
      button.type = "button";
      button.textContent = nearby.dataset.followLabel;
      button.addEventListener("click", function () { follow(r.id); });
      li.appendChild(button);
      nearbyList.appendChild(li);
    });
    nearby.hidden = false;
  }

  document.getElementById("nearby-different").addEventListener("click", function () {
    acknowledged.value = "1";
    nearby.hidden = true;
    say(nearby.dataset.dismissed, false);
    document.getElementById("description").focus();
  });

  /* Photos: at most five, each scaled to at most 2,000 px (JPEG) before upload. */
  var MAX_SIDE = 2000, MAX_PHOTOS = 5;
  var photos = document.getElementById("photos");
  var photosStatus = document.getElementById("photos-status");
  var previews = document.getElementById("photo-previews");
  var send = document.getElementById("send");

  function scaled(file) {
    if (!/^image\/(jpeg|png|webp)$/.test(file.type) || !window.createImageBitmap) return Promise.resolve(file);
    return createImageBitmap(file, { imageOrientation: "from-image" }).then(function (bitmap) {
      var ratio = Math.min(1, MAX_SIDE / Math.max(bitmap.width, bitmap.height));
      if (ratio === 1) { bitmap.close(); return file; }
      var canvas = document.createElement("canvas");
      canvas.width = Math.round(bitmap.width * ratio);
      canvas.height = Math.round(bitmap.height * ratio);
      canvas.getContext("2d").drawImage(bitmap, 0, 0, canvas.width, canvas.height);
      bitmap.close();
      return new Promise(function (resolve) {
        canvas.toBlob(function (blob) {
          if (!blob) { resolve(file); return; }
          var name = file.name.replace(/\.[^.]*$/, "") + ".jpg";
          resolve(new File([blob], name, { type: "image/jpeg", lastModified: file.lastModified }));
        }, "image/jpeg", 0.85);
      });
    }).catch(function () { return file; });
  }

  photos.addEventListener("change", function () {
    var files = Array.prototype.slice.call(photos.files || []);
    previews.textContent = "";
    if (files.length > MAX_PHOTOS) {
      photosStatus.textContent = text.photoTooMany;
      photos.value = "";
      return;
    }
    if (!files.length || !window.DataTransfer) return;
    photosStatus.textContent = text.photoScaling;
    send.disabled = true;
    Promise.all(files.map(scaled)).then(function (ready) {
      var transfer = new DataTransfer();
      ready.forEach(function (file, i) {
        transfer.items.add(file);
        var li = document.createElement("li");
        var img = document.createElement("img");
        img.src = URL.createObjectURL(file);
        img.alt = file.name;
        li.appendChild(img);
        previews.appendChild(li);
      });
      photos.files = transfer.files;
      photosStatus.textContent = text.photoReady.replace("{count}", ready.length);
    }).finally(function () { send.disabled = false; });
  });
})();
