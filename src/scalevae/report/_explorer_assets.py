"""The explorer's page script and styles (:mod:`.explorer` puts them in the page).

``_JS`` defines ``window.scalevaeExplorer`` over the JSON data block ``sv-data``; ``_CSS``
styles the controls and the patch rows."""

_JS = r"""
(function () {
  var D = JSON.parse(document.getElementById('sv-data').textContent);
  function dec(b64, T) {
    var s = atob(b64), u = new Uint8Array(s.length);
    for (var i = 0; i < s.length; i++) u[i] = s.charCodeAt(i);
    return new T(u.buffer);
  }
  var F16 = null;  // float16 bits -> value, all 65536 of them
  function half(b64) {
    if (!F16) {
      F16 = new Float32Array(65536);
      for (var h = 0; h < 65536; h++) {
        var e = (h >> 10) & 31, f = h & 1023, sg = h & 32768 ? -1 : 1;
        F16[h] = sg * (e === 0 ? f * Math.pow(2, -24) : e === 31 ? (f ? NaN : Infinity)
                       : (1 + f / 1024) * Math.pow(2, e - 15));
      }
    }
    var u = dec(b64, Uint16Array), out = new Float32Array(u.length);
    for (var i = 0; i < u.length; i++) out[i] = F16[u[i]];
    return out;
  }
  var nw = D.windows.length, nd = D.drawn.length, nk = D.latents.length;
  var Z = {}, A = {};
  D.states.forEach(function (s) {
    Z[s] = half(D.z[s]);
    if (D.angle[s]) A[s] = half(D.angle[s]);
  });
  // The patches come as one WebP image per kind (point rows, window columns), read back
  // into grey levels once the browser has decoded them.
  var SEEN = null, RECON = null, pending = 0;
  function atlas(b64, done) {
    pending++;
    var img = new Image();
    img.onload = function () {
      var c = document.createElement('canvas'); c.width = img.width; c.height = img.height;
      var ctx = c.getContext('2d'); ctx.drawImage(img, 0, 0);
      var px = ctx.getImageData(0, 0, img.width, img.height).data;
      var g = new Uint8Array(img.width * img.height);
      for (var i = 0; i < g.length; i++) g[i] = px[4 * i];
      done(g); pending--;
    };
    img.src = 'data:image/webp;base64,' + b64;
  }
  if (D.seen) atlas(D.seen, function (g) { SEEN = g; });
  if (D.recon) atlas(D.recon, function (g) { RECON = g; });
  var rowOf = {}; D.drawn.forEach(function (p, j) { rowOf[p] = j; });
  var storedOf = {}; D.patch_points.forEach(function (p, j) { storedOf[p] = j; });
  var current = null;
  function doc() { return window.Bokeh && Bokeh.documents.length ? Bokeh.documents[0] : null; }
  function m(name) { return doc().get_model_by_name(name); }
  function el(id) { return document.getElementById(id); }
  function state() { return document.querySelector("input[name='sv-state']:checked").value; }
  function wi() { return Math.round(+el('sv-slider').value); }
  function column(s, w, k) {
    var out = new Float32Array(nd), z = Z[s], base = w * nd * nk;
    for (var j = 0; j < nd; j++) out[j] = z[base + j * nk + k];
    return out;
  }
  function colourValues(s, w, v) {
    if (v === 'angle') return A[s].slice(w * nd, (w + 1) * nd);
    return column(s, w, D.latents.indexOf(v));
  }
  function sync() {
    if (!doc()) return;
    var s = state(), w = wi(), v = el('sv-colour').value;
    var src = m('sv_points');
    var z1 = column(s, w, 0), z2 = nk > 1 ? column(s, w, 1) : new Float32Array(nd);
    var data = {x: src.data.x, y: src.data.y, point: src.data.point, z1: z1, z2: z2,
                c: colourValues(s, w, v)};
    src.data = data;
    var r = D.range[s][v]; var cm = m('sv_cmap'); cm.low = r[0]; cm.high = r[1];
    el('sv-wlabel').textContent = 'window: ' + D.windows[w] + ' px (' + s + ' state)';
    m('sv_span').location = D.windows[w];
    if (current !== null) trajectory(current);
    status();
  }
  function status() {
    var n = m('sv_points').selected.indices.length;
    var txt = 'Drawn: ' + nd + ' of ' + D.n_points + ' keypoints' +
      (nd < D.n_points ? ' (an even subsample)' : '') + '. Selected: ' + n + '.';
    if (current !== null) txt += ' Clicked keypoint: ' + current + '.';
    el('sv-status').textContent = txt;
  }
  function trajectory(p) {
    var j = rowOf[p], s = state(), t = {w: D.windows.slice()};
    D.latents.forEach(function (k, ki) {
      var v = [];
      for (var w = 0; w < nw; w++) v.push(Z[s][w * nd * nk + j * nk + ki]);
      t[k] = v;
    });
    m('sv_traj').data = t;
  }
  function drawPatch(canvas, arr, k, w, r) {
    canvas.width = r; canvas.height = r;
    var ctx = canvas.getContext('2d'), im = ctx.createImageData(r, r), W = nw * r;
    for (var i = 0; i < r * r; i++) {
      var g = arr[(k * r + Math.floor(i / r)) * W + w * r + (i % r)];
      im.data[4 * i] = g; im.data[4 * i + 1] = g; im.data[4 * i + 2] = g; im.data[4 * i + 3] = 255;
    }
    ctx.putImageData(im, 0, 0);
  }
  function patches(p) {
    var box = document.getElementById('sv-patches'), k = storedOf[p];
    box.innerHTML = '';
    if (k === undefined || !D.seen) {
      box.textContent = 'No patches stored for keypoint ' + p + (D.seen ?
        ' (the page stores them for ' + D.patch_points.length + ' keypoints, an even ' +
        'subsample: scalevaeExplorer.data.patch_points)' : ' (' + D.patch_note + ')') + '.';
      return 0;
    }
    var r = D.patch_size, shown = 0;
    [['as the model saw it', SEEN], ['final-model reconstruction', RECON]].forEach(function (e) {
      if (!e[1]) return;
      var line = document.createElement('div'); line.className = 'sv-row';
      var lab = document.createElement('span'); lab.className = 'sv-lab'; lab.textContent = e[0];
      line.appendChild(lab);
      for (var w = 0; w < nw; w++) {
        var cell = document.createElement('figure'); cell.className = 'sv-cell';
        var c = document.createElement('canvas');
        c.className = e[1] === SEEN ? 'sv-seen' : 'sv-recon';
        c.dataset.window = D.windows[w];
        drawPatch(c, e[1], k, w, r);
        var cap = document.createElement('figcaption'); cap.textContent = D.windows[w] + ' px';
        cell.appendChild(c); cell.appendChild(cap); line.appendChild(cell);
        if (e[1] === SEEN) shown++;
      }
      box.appendChild(line);
    });
    return shown;
  }
  function selectPoint(p) {
    if (rowOf[p] === undefined) throw new Error('keypoint ' + p + ' is not drawn');
    current = p;
    var src = m('sv_points');
    if (src.selected.indices.length !== 1 || src.selected.indices[0] !== rowOf[p])
      src.selected.indices = [rowOf[p]];
    trajectory(p);
    var n = patches(p);
    status();
    return n;
  }
  window.scalevaeExplorer = {
    data: D,
    ready: function () { return !!(doc() && m('sv_points')) && pending === 0; },
    windows: function () { return D.windows.slice(); },
    setWindow: function (px) {
      var w = D.windows.indexOf(Math.round(px));
      if (w < 0) throw new Error('no window ' + px + ' px; windows: ' + D.windows.join(', '));
      el('sv-slider').value = w; sync(); return D.windows[w];
    },
    setState: function (s) {
      var i = D.states.indexOf(s);
      if (i < 0) throw new Error('no state ' + s);
      document.querySelectorAll("input[name='sv-state']").forEach(function (r) {
        r.checked = r.value === s;
      });
      sync(); return s;
    },
    selectPoint: selectPoint,
    selectLatentBox: function (z1min, z1max, z2min, z2max) {
      var s = state(), w = wi(), z1 = column(s, w, 0);
      var z2 = nk > 1 ? column(s, w, 1) : new Float32Array(nd), rows = [], pts = [];
      for (var j = 0; j < nd; j++) {
        if (z1[j] >= z1min && z1[j] <= z1max && z2[j] >= z2min && z2[j] <= z2max) {
          rows.push(j); pts.push(D.drawn[j]);
        }
      }
      m('sv_points').selected.indices = rows;
      status();
      return pts;
    },
    selected: function () {
      return m('sv_points').selected.indices.map(function (j) { return D.drawn[j]; });
    },
    _sync: sync,
    _selected: function () {
      var idx = m('sv_points').selected.indices;
      if (idx.length === 1 && D.drawn[idx[0]] !== current) selectPoint(D.drawn[idx[0]]);
      else status();
    }
  };
  el('sv-slider').addEventListener('input', sync);
  el('sv-colour').addEventListener('change', sync);
  document.querySelectorAll("input[name='sv-state']").forEach(function (r) {
    r.addEventListener('change', sync);
  });
  function start() {
    if (window.scalevaeExplorer.ready()) { sync(); return; }
    setTimeout(start, 50);
  }
  start();
})();
"""

_CSS = """
#sv-patches { background: #fff; border: 1px solid #d5dae3; border-radius: 6px; padding: 0.5em;
              margin: 0.5em 0; min-height: 2em; font-size: 0.9em; }
.sv-controls { display: flex; gap: 1.5em; align-items: center; margin: 0.4em 0; }
.sv-controls input[type=range] { width: 300px; vertical-align: middle; }
.sv-row { display: flex; flex-wrap: wrap; align-items: flex-end; margin: 0.2em 0; }
.sv-lab { width: 11em; color: #3d4554; }
.sv-cell { margin: 0 3px; padding: 0; border: 0; background: none; text-align: center; }
.sv-cell canvas { width: 40px; height: 40px; image-rendering: pixelated; display: block; }
.sv-cell figcaption { font-size: 0.7em; margin: 0; }
"""
