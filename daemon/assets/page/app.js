// The reception page's script: reads the daemon's state, starts checks, shows the answer,
// and follows the daemon's event stream (no polling, no reload). Everything shown comes from
// the page's own endpoints under /page/api/; text from the daemon is put in with textContent,
// never as markup.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);

  // How each result state is told: colour (CSS, by data-state), an icon and words.
  const STATES = {
    confirmed: { icon: "✓", label: "有効" },
    invalid: { icon: "✕", label: "資格（無効）" },
    not_found: { icon: "?", label: "資格情報なし" },
    multiple: { icon: "≡", label: "複数該当" },
    captured: { icon: "!", label: "オフライン受付（事後確認待ち）" },
    refused: { icon: "✕", label: "確認できませんでした" },
    error: { icon: "!", label: "エラー" },
  };

  let line = "unknown";
  // A captured check's co-payment stays on the banner until the line is back.
  let capturedCopay = undefined;
  let pin = "";
  let busy = false;
  // Read-aloud (R21): whether the daemon can speak, and the id of the result shown.
  let readAloud = { available: false, auto: false, problem_ja: null };
  let speechId = null;

  function clear(el) {
    while (el.firstChild) el.removeChild(el.firstChild);
  }

  function make(tag, cls, text) {
    const el = document.createElement(tag);
    if (cls) el.className = cls;
    if (text !== undefined && text !== null) el.textContent = text;
    return el;
  }

  function dateJa(iso) {
    if (!iso) return "—";
    const [y, m, d] = iso.split("-").map((s) => parseInt(s, 10));
    return y + "年" + m + "月" + d + "日";
  }

  function signedOut() {
    $("stream").textContent =
      "サインインが切れました。この端末で「tsunagi open」を実行して開き直してください。";
  }

  async function getJson(path) {
    const r = await fetch(path, { credentials: "same-origin", cache: "no-store" });
    if (r.status === 401) {
      signedOut();
      throw new Error("signed out");
    }
    if (!r.ok) throw new Error("HTTP " + r.status);
    return r.json();
  }

  // ----- line, readers, banner -----

  function renderLine(state, label) {
    // The line coming back (not merely being read as online) ends a capture's banner.
    if (state === "online" && line !== "online" && line !== "unknown") capturedCopay = undefined;
    line = state;
    const el = $("line");
    el.dataset.state = state;
    const icon = { online: "✓", degraded: "!", offline: "✕" }[state] || "…";
    el.querySelector(".icon").textContent = icon;
    $("line-text").textContent = "回線: " + (label || state);
    renderBanner();
  }

  function copayText(tenths) {
    return tenths
      ? "窓口負担は " + tenths + "割 を受け取ってください"
      : "通常の負担割合（前回の情報がないため患者さんに確認）を受け取ってください";
  }

  function renderBanner() {
    const show = line === "offline" || capturedCopay !== undefined;
    $("offline").hidden = !show;
    const copay = $("offline-copay");
    if (capturedCopay !== undefined) {
      copay.textContent = copayText(capturedCopay);
      copay.hidden = false;
    } else {
      copay.textContent = "";
      copay.hidden = true;
    }
  }

  function renderReaders(readers, problem) {
    const list = $("readers");
    clear(list);
    for (const r of readers || []) {
      const li = make("li");
      li.appendChild(make("span", "reader-name", r.name));
      li.appendChild(
        r.card_present
          ? make("span", "card-on", "✓ カードあり")
          : make("span", "card-off", "－ カードなし"),
      );
      list.appendChild(li);
    }
    if (!readers || readers.length === 0) {
      list.appendChild(make("li", "card-off", "カードリーダーが見つかりません"));
    }
    const p = $("readers-problem");
    if (problem !== undefined) {
      p.textContent = problem || "";
      p.hidden = !problem;
    }
  }

  async function loadStatus() {
    const s = await getJson("/page/api/status");
    renderLine(s.line, s.line_label_ja);
    renderReaders(s.readers, s.readers_problem);
    if (s.read_aloud) readAloud = s.read_aloud;
    renderSpeech();
  }

  // ----- read-aloud -----

  function renderSpeech(problem) {
    const button = $("speak-button");
    button.hidden = !speechId;
    button.disabled = !readAloud.available;
    const p = $("speech-problem");
    const text = problem || (speechId && !readAloud.available ? readAloud.problem_ja : "");
    p.textContent = text || "";
    p.hidden = !text;
  }

  // The daemon synthesises the sentences of the result shown (the page never sends words).
  function speak() {
    if (!speechId || !readAloud.available) return;
    const audio = $("speech-audio");
    audio.src = "/page/api/speech/" + encodeURIComponent(speechId);
    audio.dataset.state = "loading";
    audio.play().catch(() => {});
  }

  async function speechFailed() {
    const audio = $("speech-audio");
    audio.dataset.state = "failed";
    let detail = "読み上げの音声を再生できませんでした。結果は画面で確認してください。";
    try {
      const r = await fetch(audio.src, { credentials: "same-origin", cache: "no-store" });
      if (!r.ok) {
        const problem = await r.json();
        if (problem && problem.detail) detail = problem.detail;
      }
    } catch (_) {}
    renderSpeech(detail);
  }

  // ----- the pending list -----

  async function loadPending() {
    const list = await getJson("/page/api/pending");
    const rows = $("pending-rows");
    clear(rows);
    for (const c of list.checks) {
      const tr = make("tr");
      tr.dataset.checkId = c.id;
      tr.appendChild(make("td", "id", c.id.slice(-8)));
      tr.lastChild.title = c.id;
      tr.appendChild(make("td", null, dateJa(c.visit_date)));
      const due = make("td", c.overdue ? "overdue" : null);
      due.textContent = dateJa(c.due) + (c.overdue ? "（⚠ 期限切れ）" : "");
      tr.appendChild(due);
      tr.appendChild(make("td", null, c.phase_label_ja));
      tr.appendChild(make("td", null, c.next_step_ja || (c.captured_offline ? "自動で再確認します" : "")));
      rows.appendChild(tr);
    }
    const n = list.checks.length;
    const overdue = list.checks.filter((c) => c.overdue).length;
    $("pending").hidden = n === 0;
    $("pending-empty").hidden = n !== 0;
    $("pending-count").textContent =
      n === 0 ? "" : "（" + n + "件" + (overdue ? "、うち期限切れ " + overdue + "件" : "") + "）";
  }

  // ----- the check form -----

  function method() {
    const checked = document.querySelector('input[name="method"]:checked');
    return checked ? checked.value : "visual";
  }

  function renderPin() {
    $("pin-dots").textContent = pin.length ? "●".repeat(pin.length) + "（" + pin.length + "桁）" : "入力なし";
  }

  function renderForm() {
    const photoLess = $("photo-less").checked;
    const visual = document.querySelector('input[name="method"][value="visual"]');
    if (photoLess) {
      // R2: a card without a photo is checked by PIN only.
      document.querySelector('input[name="method"][value="pin"]').checked = true;
    }
    visual.disabled = photoLess;
    $("pin-area").hidden = method() !== "pin";
  }

  function addDigit(d) {
    if (pin.length < 4) pin += d;
    renderPin();
  }

  function showError(text) {
    const e = $("form-error");
    e.textContent = text || "";
    e.hidden = !text;
  }

  function renderResult(report) {
    const box = $("result");
    clear(box);
    const state = STATES[report.status] ? report.status : "error";
    box.dataset.state = state;
    const head = make("p", "result-head");
    const icon = make("span", "icon", STATES[state].icon);
    icon.setAttribute("aria-hidden", "true");
    head.appendChild(icon);
    head.appendChild(make("span", "result-label", STATES[state].label));
    box.appendChild(head);
    if (report.copay_tenths) {
      box.appendChild(make("p", "result-copay", "負担割合 " + report.copay_tenths + "割"));
    }
    box.appendChild(make("p", "result-message", report.message_ja));
    const steps = (report.instructions_ja || []).concat(
      (report.notices || []).map((n) => n.message_ja),
    );
    if (steps.length) {
      box.appendChild(make("p", "result-next", "いますること:"));
      const ol = make("ol");
      for (const s of steps) ol.appendChild(make("li", null, s));
      box.appendChild(ol);
    }
    if (report.check_id) {
      box.appendChild(make("p", "result-id", "確認ID: " + report.check_id));
    }
  }

  function renderTries(report) {
    const tries = $("pin-tries");
    const last = $("last-try");
    const left = report && report.status === "refused" ? report.pin_tries_left : null;
    if (left === null || left === undefined) {
      tries.hidden = true;
      last.hidden = true;
      $("confirm-last-try").checked = false;
      return;
    }
    tries.textContent = "暗証番号が違います。残り " + left + " 回です。";
    tries.hidden = false;
    last.hidden = left !== 1;
  }

  async function startCheck(ev) {
    ev.preventDefault();
    if (busy) return;
    showError("");
    const m = method();
    const body = {
      method: m,
      first_visit: $("first-visit").checked,
      photo_less: $("photo-less").checked,
    };
    if (m === "pin") {
      if (!/^[0-9]{4}$/.test(pin)) {
        showError("暗証番号は数字4桁です。入力パッドで4桁入力してください。");
        return;
      }
      body.pin = pin;
      body.confirm_last_try = $("confirm-last-try").checked;
    }
    busy = true;
    $("start-button").disabled = true;
    $("busy").hidden = false;
    // The browser's own timing of a check, for the page's benchmark (benches/page.rs).
    performance.mark("tsunagi:check-sent");
    try {
      const r = await fetch("/page/api/checks", {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
      });
      const answer = await r.json().catch(() => null);
      performance.mark("tsunagi:answer-arrived");
      if (r.status === 401) {
        signedOut();
      } else if (!r.ok) {
        showError((answer && answer.detail) || "確認を始められませんでした（HTTP " + r.status + "）。");
      } else {
        renderResult(answer);
        renderTries(answer);
        // Marked once the frame holding the answer has been drawn.
        requestAnimationFrame(() => setTimeout(() => performance.mark("tsunagi:answer-drawn"), 0));
        speechId = answer.speech_id || null;
        renderSpeech();
        if (readAloud.auto) speak();
        if (answer.status === "captured") {
          capturedCopay = answer.copay_tenths || null;
          renderBanner();
        }
        $("result").focus();
      }
    } catch (e) {
      showError("tsunagid に接続できませんでした。tsunagid が動いているか確認してください。");
    } finally {
      // The PIN is not kept after it was sent, whatever happened.
      pin = "";
      renderPin();
      busy = false;
      $("start-button").disabled = false;
      $("busy").hidden = true;
    }
  }

  // ----- the event stream -----

  function refresh() {
    loadStatus().catch(() => {});
    loadPending().catch(() => {});
  }

  function follow() {
    const es = new EventSource("/page/api/events");
    es.onopen = () => {
      $("stream").textContent = "更新を受信しています";
      // Whatever happened while the stream was closed.
      refresh();
    };
    es.onerror = () => {
      $("stream").textContent = "tsunagid からの更新が途切れました。再接続しています…";
    };
    es.addEventListener("line", refresh);
    es.addEventListener("readers", (e) => {
      try {
        renderReaders(JSON.parse(e.data).readers);
      } catch (_) {
        refresh();
      }
    });
    for (const kind of ["check_captured", "check_answered", "check_resolved", "check_updated", "resync"]) {
      es.addEventListener(kind, refresh);
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("result").tabIndex = -1;
    for (const b of document.querySelectorAll(".pad [data-digit]")) {
      b.addEventListener("click", () => addDigit(b.dataset.digit));
    }
    $("pin-clear").addEventListener("click", () => {
      pin = "";
      renderPin();
    });
    $("pin-back").addEventListener("click", () => {
      pin = pin.slice(0, -1);
      renderPin();
    });
    // Digits typed on a keyboard go to the pad too.
    $("pin-area").addEventListener("keydown", (e) => {
      if (/^[0-9]$/.test(e.key)) {
        addDigit(e.key);
        e.preventDefault();
      } else if (e.key === "Backspace") {
        pin = pin.slice(0, -1);
        renderPin();
        e.preventDefault();
      }
    });
    for (const r of document.querySelectorAll('input[name="method"]')) {
      r.addEventListener("change", renderForm);
    }
    $("photo-less").addEventListener("change", renderForm);
    $("check-form").addEventListener("submit", startCheck);
    $("speak-button").addEventListener("click", speak);
    $("speech-audio").addEventListener("error", speechFailed);
    $("speech-audio").addEventListener("playing", () => {
      $("speech-audio").dataset.state = "playing";
    });
    renderForm();
    renderPin();
    refresh();
    follow();
  });
})();
