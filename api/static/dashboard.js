// The dashboard: asks the worker for the group's figures every 2 s and draws them. With
// API_TOKEN set it asks for the token first, keeps it in sessionStorage (this tab only, as
// the /docs page does) and sends it as a header; it never puts it in a URL.
(function () {
  "use strict";
  var KEY = "orderstream.apiToken";
  var EVERY_MS = 2000;
  var $ = function (id) { return document.getElementById(id); };
  var paused = false, timer = null;
  // [key, label, what it counts, the sample it has (route kind, its records' name)]
  var COUNTERS = [
    ["processed", "Read", "messages read from the orders topic", null],
    ["counted", "Counted", "orders applied to the aggregates", null],
    ["invalid", "Invalid", "sent to orders-dlq", ["invalid", "invalid"]],
    ["duplicate", "Duplicates", "exact repeats: counted here, kept nowhere", null],
    ["conflict", "Conflicts", "an order number reused with other content: orders-dlq",
     ["conflict", "conflict"]],
    ["late", "Late", "missed a final window: orders-late", ["late", "late"]],
  ];

  function token() { return sessionStorage.getItem(KEY); }

  function get(path) {
    var headers = {};
    if (token()) { headers.Authorization = "Bearer " + token(); }
    return fetch(path, { headers: headers }).then(function (answer) {
      if (answer.status === 401) { throw new Error("token"); }
      if (!answer.ok) { throw new Error(path + " answered HTTP " + answer.status); }
      return answer.json();
    });
  }

  function number(value, digits) {
    return Number(value).toLocaleString("en-US", { maximumFractionDigits: digits || 0 });
  }

  function time(ms) {
    return ms === null || ms === undefined ? "none yet" : new Date(ms).toISOString();
  }

  function cell(row, text, className) {
    var td = document.createElement("td");
    td.textContent = text;
    if (className) { td.className = className; }
    row.appendChild(td);
    return td;
  }

  function rows(body, items, columns, empty) {
    var tbody = $(body);
    tbody.textContent = "";
    if (!items.length) {
      var tr = tbody.insertRow();
      var td = cell(tr, empty);
      td.colSpan = columns.length;
      return;
    }
    items.forEach(function (item) {
      var tr = tbody.insertRow();
      columns.forEach(function (column) { cell(tr, column[0](item), column[1]); });
    });
  }

  function buyer(b) { return b.first_name + " " + b.last_name; }

  function drawGraph(operators) {
    var list = $("operators");
    list.textContent = "";
    operators.forEach(function (op, i) {
      var li = document.createElement("li");
      li.dataset.operator = op.name;
      var title = document.createElement("strong");
      title.textContent = op.name;
      li.appendChild(title);
      var task = document.createElement("span");
      task.className = "task";
      task.textContent = " (" + op.task + " task)";
      li.appendChild(task);
      var figures = document.createElement("ul");
      [["in", number(op.in_per_s, 1) + " records/s"],
       ["out", number(op.out_per_s, 1) + " records/s"],
       ["waits", op.wait_ms_per_s === null ? "chained: no queue of its own"
         : number(op.wait_ms_per_s) + " ms/s on its " + op.waits_on]
      ].forEach(function (pair) {
        var item = document.createElement("li");
        item.textContent = pair[0] + ": " + pair[1];
        figures.appendChild(item);
      });
      li.appendChild(figures);
      var what = document.createElement("p");
      what.className = "note";
      what.textContent = op.records + "; " + number(op.in_total) + " in, " +
        number(op.out_total) + " out since start.";
      li.appendChild(what);
      if (i < operators.length - 1) {
        var arrow = document.createElement("span");
        arrow.className = "arrow";
        arrow.setAttribute("aria-hidden", "true");
        arrow.textContent = "→";
        li.appendChild(arrow);
      }
      list.appendChild(li);
    });
  }

  function drawChart(points) {
    var svg = $("chart"), caption = $("chart-caption");
    var now = Date.now(), from = now - 600000;
    points = points.filter(function (p) { return p[0] >= from; });
    var peak = points.reduce(function (m, p) { return Math.max(m, p[1]); }, 0);
    var top = Math.max(1, peak);
    var line = points.map(function (p) {
      return ((p[0] - from) / 600000 * 600).toFixed(1) + "," +
        (150 - p[1] / top * 140).toFixed(1);
    }).join(" ");
    svg.innerHTML = '<line x1="0" y1="150" x2="600" y2="150" class="axis"/>' +
      (points.length > 1 ? '<polyline points="' + line + '" class="line"/>' : "");
    // "now" over the last 3 points (6 s), as the status line's rate: one 2 s point follows
    // the batches' rhythm
    var recent = points.slice(-3);
    var current = recent.reduce(function (sum, p) { return sum + p[1]; }, 0) /
      Math.max(1, recent.length);
    caption.textContent = points.length
      ? "Now " + number(current, 1) + " orders/s; peak " + number(peak, 1) +
        " orders/s over the last 10 minutes (" + points.length + " points, every 2 s; " +
        "the chart's height is 0 to " + number(top) + " orders/s)."
      : "No samples yet.";
  }

  // Built once: a control re-made every 2 s would lose a keyboard user's focus.
  function buildCounters() {
    var dl = $("counters");
    COUNTERS.forEach(function (c) {
      var dt = document.createElement("dt");
      dt.textContent = c[1];
      var dd = document.createElement("dd");
      dd.dataset.counter = c[0];
      var value = document.createElement("span");
      value.className = "value";
      value.textContent = "not loaded";  // not a 0 it does not know
      dd.appendChild(value);
      var note = document.createElement("span");
      note.className = "note";
      note.textContent = " " + c[2];
      dd.appendChild(note);
      if (c[3]) {
        var button = document.createElement("button");
        button.type = "button";
        button.textContent = "Show a sample of " + c[3][1] + " records";
        button.setAttribute("aria-controls", "sample");
        button.addEventListener("click", function () { showSample(c[3][0], c[1]); });
        dd.appendChild(button);
      }
      dl.appendChild(dt);
      dl.appendChild(dd);
    });
  }

  function drawCounters(counters) {
    COUNTERS.forEach(function (c) {
      document.querySelector('[data-counter="' + c[0] + '"] .value').textContent =
        number(counters[c[0]] || 0);
    });
  }

  function showSample(kind, label) {
    get("dashboard/samples/" + kind).then(function (answer) {
      $("sample").hidden = false;
      $("sample-title").textContent = "Sample: " + label + " (" + answer.topic + ")";
      $("sample-note").textContent = answer.items.length + " of the latest records.";
      rows("sample-rows", answer.items, [
        [function (r) { return r.error || r.reason || ""; }],
        [function (r) {
          var shown = Object.assign({}, r);
          delete shown.error; delete shown.reason;
          return JSON.stringify(shown);
        }, "record"],
      ], "None among the latest records on the topic.");
      $("sample-title").focus();
    }).catch(failed);
  }

  function clock(iso) { return iso.slice(11, 23); }  // 2026-11-24T10:00:00.000Z -> 10:00:00.000

  function drawBuyers(buyers) {
    rows("buyers", buyers.items, [
      [function (b) { return buyers.items.indexOf(b) + 1; }, "num"],
      [function (b) { return buyer(b.buyer); }],
      [function (b) { return number(b.count); }, "num"],
      [function (b) { return b.total_price; }, "num"],
    ], "No buyers yet.");
  }

  function note(id, text) {
    $(id).hidden = !text;
    $(id).textContent = text || "";
  }

  function render(data) {
    drawGraph(data.operators);
    drawChart(data.throughput);
    drawCounters(data.counters);
    note("finals-error", data.finals_error ? "Not read this time: " + data.finals_error : "");
    rows("finals", data.finals, [
      [function (r) { return r.window; }], [function (r) { return clock(r.window_start); }],
      [function (r) { return clock(r.window_end); }], [function (r) { return buyer(r.buyer); }],
      [function (r) { return number(r.count); }, "num"],
      [function (r) { return r.sum_price; }, "num"],
    ], "No final window yet.");
    rows("sources", data.sources, [
      [function (s) { return s.partition; }],
      [function (s) { return s.lag === null ? "unknown" : number(s.lag); }, "num"],
      [function (s) { return time(s.watermark_ms); }],
      [function (s) { return s.idle ? "idle" : "active"; }],
    ], "No orders partition read yet.");
    rows("aggregation", data.aggregation, [
      [function (a) { return a.partition; }], [function (a) { return time(a.watermark_ms); }],
      [function (a) {
        return a.sources.map(function (s) {
          return "from " + s.partition + ": " + time(s.watermark_ms) + (s.idle ? " (idle)" : "");
        }).join("; ") || "none yet";
      }],
    ], "No aggregation partition yet.");
    rows("workers", data.workers, [
      [function (w) { return w.url; }], [function (w) { return w.status; }],
      [function (w) {
        return "aggregation: " + (w.partitions.join(", ") || "none") + "; orders: " +
          ((w.orders_partitions || []).join(", ") || "none");
      }],
      [function (w) { return w.lag === null ? "unknown" : number(w.lag); }, "num"],
    ], "No worker answered.");
    $("updated").textContent = "Updated " + new Date().toISOString() + ": " +
      number(data.orders_per_s, 1) + " orders/s across " + data.workers.length +
      " worker(s).";
  }

  // The live region says only what changed state (a failure, the token, paused), not
  // every update: a screen reader would read it every 2 s.
  function say(text) {
    if ($("status").textContent !== text) { $("status").textContent = text; }
  }

  function failed(error) {
    if (error.message === "token") {
      ask(token() ? "That token was refused: enter the worker's API_TOKEN."
                  : "This worker needs its API_TOKEN to show the dashboard.");
      return;
    }
    say("Could not update: " + error.message + ". Trying again every 2 s.");
  }

  function ask(message) {
    say(message);
    $("token-form").hidden = false;
    $("forget-token").hidden = true;
    clearTimeout(timer);
    $("token").focus();
  }

  // Each part drawn on its own: top buyers answer 503 while partitions move, and the rest
  // of the page is what a user then wants to see.
  function update() {
    clearTimeout(timer);
    var started = Date.now();
    Promise.allSettled([get("dashboard/data"), get("buyers?limit=10")]).then(function (both) {
      var data = both[0], buyers = both[1];
      if (data.status === "rejected" && data.reason.message === "token") {
        failed(data.reason);
        return;
      }
      if (data.status === "fulfilled") {
        render(data.value);
        say(paused ? "Paused." : "Live: updated every 2 s.");
      } else {
        failed(data.reason);
      }
      if (buyers.status === "fulfilled") {
        note("buyers-error", "");
        drawBuyers(buyers.value);
      } else {
        note("buyers-error", "Top buyers not available now: " + buyers.reason.message);
      }
      $("forget-token").hidden = !token();
      schedule(started);
    });
  }

  // every 2 s from the start of the last update, not from its end
  function schedule(started) {
    if (!paused) { timer = setTimeout(update, Math.max(0, started + EVERY_MS - Date.now())); }
  }

  function start() {
    // whether the data needs a token, asked of an open route: no 401 just for looking
    fetch("dashboard/access").then(function (answer) { return answer.json(); })
      .then(function (access) {
        if (access.token_required && !token()) {
          ask("This worker needs its API_TOKEN to show the dashboard.");
        } else {
          update();
        }
      }).catch(function (error) {
        failed(error);
        timer = setTimeout(start, EVERY_MS);
      });
  }

  $("token-form").addEventListener("submit", function (event) {
    event.preventDefault();
    sessionStorage.setItem(KEY, $("token").value);
    $("token").value = "";
    $("token-form").hidden = true;
    update();
  });
  $("forget-token").addEventListener("click", function () {
    sessionStorage.removeItem(KEY);
    location.reload();
  });
  $("pause").addEventListener("click", function () {
    paused = !paused;
    this.setAttribute("aria-pressed", String(paused));
    this.textContent = paused ? "Resume updates" : "Pause updates";
    say(paused ? "Paused." : "Live: updated every 2 s.");
    if (paused) { clearTimeout(timer); } else { update(); }
  });
  $("sample-close").addEventListener("click", function () {
    $("sample").hidden = true;
    $("counters-title").focus();
  });

  buildCounters();
  start();
})();
