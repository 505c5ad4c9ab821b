/* heritage_seg's damage viewer: one scan's Deep Zoom pyramids as OpenSeadragon layers, with class toggles, an
 * opacity slider, a swipe comparison, the largest regions and a scale. The page's data (written by
 * heritage_seg/reporting/viewer/page.py) is the JSON in <script id="viewer-data">: the tile sources are given
 * inline, so the page works from file:// (where the browser would refuse to read a .dzi file) and over HTTP. */
(function () {
  "use strict";
  const data = JSON.parse(document.getElementById("viewer-data").textContent);
  const W = data.width;
  const H = data.height;
  const state = { opacity: data.opacity, swipe: null, classOn: {}, layerOn: {} };
  const entries = []; // one per tiled image: {layer, classId, item, x, y, width, height}
  const byId = (id) => document.getElementById(id);
  const deepest = {}; // "scan", "damage:7", … -> the deepest pyramid level whose tiles were loaded (tests read it)
  let baseItem = null; // the scan's tiled image: its pixels are the page's coordinates

  const viewer = OpenSeadragon({
    element: byId("osd"),
    drawer: "canvas", // the same pixels on every browser; tiles from file:// may not be read back, only drawn
    showNavigationControl: false, // the page's own controls below (no button images to ship)
    showNavigator: true,
    navigatorPosition: "BOTTOM_RIGHT",
    maxZoomPixelRatio: 32, // down to single scan pixels, each as a 32 x 32 block
    imageSmoothingEnabled: false, // a pixel is a sharp square when zoomed in, as a mask is
    visibilityRatio: 0.2,
    animationTime: 0.4,
    gestureSettingsMouse: { clickToZoom: false, dblClickToZoom: true },
    preserveImageSizeOnResize: true,
  });

  data.classes.forEach((c) => (state.classOn[c.id] = true));
  data.layers.forEach((l) => (state.layerOn[l.id] = l.visible));

  function opacityOf(entry) {
    const layer = entry.layer;
    if (layer.kind === "image") return 1;
    if (!state.layerOn[layer.id]) return 0;
    if (entry.classId !== null && !state.classOn[entry.classId]) return 0;
    return state.opacity;
  }

  function clipOf(entry) {
    if (state.swipe === null || entry.layer.kind === "image") return null;
    const from = Math.min(Math.max(state.swipe * W - entry.x, 0), entry.width); // in the layer's own pixels
    return new OpenSeadragon.Rect(from, 0, entry.width - from, entry.height);
  }

  function apply() {
    entries.forEach((e) => {
      e.item.setOpacity(opacityOf(e));
      e.item.setClip(clipOf(e));
    });
    placeDivider();
  }

  function add(layer, classId, pyramid) {
    return new Promise((resolve, reject) => {
      const entry = { layer: layer, classId: classId, x: pyramid.x, y: pyramid.y, width: pyramid.width, height: pyramid.height };
      viewer.addTiledImage({
        tileSource: pyramid.source,
        x: pyramid.x / W, // viewport units: the scan is 1 wide
        y: pyramid.y / W,
        width: pyramid.width / W,
        opacity: 0,
        success: (event) => {
          entry.item = event.item;
          if (layer.kind === "image") baseItem = event.item;
          entries.push(entry);
          entry.item.setOpacity(opacityOf(entry));
          resolve(entry);
        },
        error: (event) => reject(new Error("layer " + layer.id + ": " + event.message)),
      });
    });
  }

  const added = [add({ id: "scan", kind: "image" }, null, data.base)];
  data.layers.forEach((layer) => {
    if (layer.kind === "classes") {
      layer.items.forEach((it) => added.push(add(layer, it.class_id, it.pyramid)));
    } else {
      added.push(add(layer, null, layer.pyramid));
    }
  });

  viewer.addHandler("tile-loaded", (event) => {
    const entry = entries.find((e) => e.item === event.tiledImage);
    const id = !entry ? "scan" : entry.classId === null ? entry.layer.id : entry.layer.id + ":" + entry.classId;
    deepest[id] = Math.max(deepest[id] === undefined ? -1 : deepest[id], event.tile.level);
  });

  const base = () => baseItem;

  /* ---- controls ---- */
  function legend() {
    const list = byId("classes");
    data.classes.forEach((c) => {
      const row = document.createElement("label");
      row.className = "row";
      row.innerHTML = '<input type="checkbox" checked><span class="swatch"></span><span class="name"></span>';
      row.querySelector(".swatch").style.background = c.color;
      row.querySelector(".name").textContent = c.name;
      const box = row.querySelector("input");
      box.dataset.classId = c.id;
      box.addEventListener("change", () => setClassVisible(c.id, box.checked));
      list.appendChild(row);
    });
    const layers = byId("layers");
    data.layers.forEach((l) => {
      const row = document.createElement("label");
      row.className = "row";
      row.innerHTML = '<input type="checkbox"><span class="name"></span>';
      row.querySelector(".name").textContent = l.name;
      const box = row.querySelector("input");
      box.checked = l.visible;
      box.dataset.layerId = l.id;
      box.addEventListener("change", () => setLayerVisible(l.id, box.checked));
      layers.appendChild(row);
    });
  }

  function regions() {
    const list = byId("regions");
    data.regions.forEach((r, i) => {
      const item = document.createElement("li");
      const button = document.createElement("button");
      button.type = "button";
      button.dataset.region = i;
      button.innerHTML = '<span class="swatch"></span><span class="name"></span>';
      button.querySelector(".swatch").style.background = r.color;
      const [x0, y0, x1, y1] = r.bbox;
      button.querySelector(".name").textContent =
        r.class + " — " + r.pixels.toLocaleString("en") + " px (" + (x1 - x0) + " × " + (y1 - y0) + ")";
      button.addEventListener("click", () => zoomToRegion(i));
      item.appendChild(button);
      list.appendChild(item);
    });
  }

  let marker = null;
  function zoomToRegion(i) {
    const [x0, y0, x1, y1] = data.regions[i].bbox;
    const pad = Math.max(4, 0.15 * Math.max(x1 - x0, y1 - y0));
    const rect = base().imageToViewportRectangle(x0 - pad, y0 - pad, x1 - x0 + 2 * pad, y1 - y0 + 2 * pad);
    viewer.viewport.fitBounds(rect);
    if (marker) viewer.removeOverlay(marker);
    marker = document.createElement("div");
    marker.className = "region-marker";
    viewer.addOverlay({ element: marker, location: base().imageToViewportRectangle(x0, y0, x1 - x0, y1 - y0) });
    document.querySelectorAll("#regions button").forEach((b) => b.classList.toggle("active", b.dataset.region == i));
  }

  function setClassVisible(id, on) {
    state.classOn[id] = on;
    apply();
  }

  function setLayerVisible(id, on) {
    state.layerOn[id] = on;
    apply();
  }

  function setOpacity(value) {
    state.opacity = value;
    byId("opacity-value").textContent = Math.round(100 * value) + " %";
    apply();
  }

  function setSwipe(value) {
    state.swipe = value; // null: off; 0..1: overlays shown right of that fraction of the scan's width
    byId("divider").hidden = value === null;
    apply();
  }

  function placeDivider() {
    if (state.swipe === null || !baseItem) return;
    const p = viewer.viewport.pixelFromPoint(new OpenSeadragon.Point(state.swipe, 0), true);
    byId("divider").style.left = Math.round(p.x) + "px";
  }

  /* ---- scale ---- */
  function nice(value) {
    const power = Math.pow(10, Math.floor(Math.log10(value)));
    const steps = [1, 2, 5, 10];
    return power * steps.find((s) => s * power >= value);
  }

  function scaleBar() {
    if (!baseItem) return;
    const screenPerPixel = base().viewportToImageZoom(viewer.viewport.getZoom(true)); // screen px per scan px
    const mmPerPixel = data.dpi ? 25.4 / data.dpi : null;
    let length; // in scan pixels
    let text;
    if (mmPerPixel) {
      const mm = nice((100 / screenPerPixel) * mmPerPixel);
      length = mm / mmPerPixel;
      text = (mm >= 1 ? mm : mm.toPrecision(2)) + " mm = " + Math.round(length).toLocaleString("en") + " px";
    } else {
      length = nice(100 / screenPerPixel);
      text = length.toLocaleString("en") + " px";
    }
    byId("scalebar").style.width = Math.max(1, Math.round(length * screenPerPixel)) + "px";
    byId("scale-text").textContent = text;
    const zoom = screenPerPixel >= 1 ? "1 px = " + screenPerPixel.toFixed(1) + " screen px" : "1 screen px = " + (1 / screenPerPixel).toFixed(1) + " px";
    byId("zoom-text").textContent = zoom;
  }

  function cursor(position) {
    if (!baseItem) return;
    const p = base().viewerElementToImageCoordinates(position);
    const x = Math.floor(p.x);
    const y = Math.floor(p.y);
    const inside = x >= 0 && y >= 0 && x < W && y < H;
    let text = inside ? "x " + x + ", y " + y + " px" : "";
    if (inside && data.dpi) text += " (" + ((x * 25.4) / data.dpi).toFixed(1) + ", " + ((y * 25.4) / data.dpi).toFixed(1) + " mm)";
    byId("cursor-text").textContent = text;
  }

  new OpenSeadragon.MouseTracker({
    element: viewer.container,
    moveHandler: (event) => cursor(event.position),
  });
  viewer.addHandler("animation", () => {
    scaleBar();
    placeDivider();
  });
  viewer.addHandler("resize", placeDivider);

  legend();
  regions();
  byId("opacity").addEventListener("input", (e) => setOpacity(e.target.value / 100));
  byId("swipe-on").addEventListener("change", (e) => setSwipe(e.target.checked ? byId("swipe").value / 1000 : null));
  byId("swipe").addEventListener("input", (e) => {
    if (byId("swipe-on").checked) setSwipe(e.target.value / 1000);
  });
  byId("home").addEventListener("click", () => viewer.viewport.goHome());
  byId("one-to-one").addEventListener("click", () => {
    viewer.viewport.zoomTo(base().imageToViewportZoom(1));
  });

  const ready = Promise.all(added).then(() => {
    apply();
    scaleBar();
    document.body.dataset.ready = "true";
  });
  ready.catch((err) => {
    byId("status").textContent = "could not open a layer: " + err.message;
    console.error(err);
  });

  /* What the page offers to scripts (the browser tests, a user's console). */
  window.heritageViewer = {
    viewer: viewer,
    data: data,
    ready: ready,
    deepest: deepest,
    entries: entries,
    base: base, // the scan's tiled image: its pixels are the page's coordinates
    setClassVisible: setClassVisible,
    setLayerVisible: setLayerVisible,
    setOpacity: setOpacity,
    setSwipe: setSwipe,
    zoomToRegion: zoomToRegion,
    /* the view has stopped moving and every shown layer has its tiles for it */
    idle: () => {
      const vp = viewer.viewport;
      const still = vp.getZoom(true) === vp.getZoom(false) && vp.getCenter(true).equals(vp.getCenter(false));
      return still && entries.every((e) => e.item.getOpacity() === 0 || e.item.getFullyLoaded());
    },
    /* the part of the scan in view, in scan pixels: [x0, y0, x1, y1] */
    view: () => {
      const r = base().viewportToImageRectangle(viewer.viewport.getBounds(true));
      return [r.x, r.y, r.x + r.width, r.y + r.height];
    },
  };
})();
