// Plane dashboard behaviour that htmx does not cover. No dependencies; loaded
// with defer. Everything works through event delegation or a re-scan each
// second, so content swapped in by htmx (or SSE) needs no re-initialisation.
(function () {
	"use strict";

	// Forms and buttons with data-confirm ask before submitting. htmx
	// elements use hx-confirm instead.
	function confirmOrCancel(ev, msg) {
		if (msg && !window.confirm(msg)) {
			ev.preventDefault();
			ev.stopImmediatePropagation();
		}
	}

	document.addEventListener("submit", function (ev) {
		var btn = ev.submitter;
		confirmOrCancel(ev, (btn && btn.getAttribute("data-confirm")) || ev.target.getAttribute("data-confirm"));
	}, true);

	// A data-confirm link, or a button that does not submit a form, confirms
	// on click; a submit button is asked about on submit, above.
	document.addEventListener("click", function (ev) {
		var el = ev.target.closest && ev.target.closest("a[data-confirm], button[data-confirm]");
		if (!el || (el.tagName === "BUTTON" && el.form && el.type === "submit")) return;
		confirmOrCancel(ev, el.getAttribute("data-confirm"));
	}, true);

	// data-copy="<selector>": copy that element's text.
	document.addEventListener("click", function (ev) {
		var btn = ev.target.closest && ev.target.closest("[data-copy]");
		if (!btn) return;
		ev.preventDefault();
		var src = document.querySelector(btn.getAttribute("data-copy"));
		if (!src) return;
		var text = src.textContent.trim();
		copyText(text).then(function () {
			flash(btn, "Copied");
		}, function () {
			selectText(src);
			flash(btn, "Press Ctrl+C");
		});
	});

	function copyText(text) {
		if (navigator.clipboard && window.isSecureContext) {
			return navigator.clipboard.writeText(text);
		}
		// Plain http (not localhost) has no Clipboard API: fall back to the
		// old execCommand path.
		return new Promise(function (resolve, reject) {
			var ta = document.createElement("textarea");
			ta.value = text;
			ta.setAttribute("readonly", "");
			ta.style.position = "fixed";
			ta.style.opacity = "0";
			document.body.appendChild(ta);
			ta.select();
			var ok = false;
			try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
			document.body.removeChild(ta);
			ok ? resolve() : reject();
		});
	}

	function selectText(el) {
		var range = document.createRange();
		range.selectNodeContents(el);
		var sel = window.getSelection();
		sel.removeAllRanges();
		sel.addRange(range);
	}

	function flash(btn, text) {
		if (!btn.hasAttribute("data-copy-label")) {
			btn.setAttribute("data-copy-label", btn.textContent);
		}
		btn.textContent = text;
		clearTimeout(btn._planeCopyTimer);
		btn._planeCopyTimer = setTimeout(function () {
			btn.textContent = btn.getAttribute("data-copy-label");
			btn.removeAttribute("data-copy-label");
		}, 1500);
	}

	// htmx requests carry the CSRF token from <meta name="csrf-token">.
	document.addEventListener("htmx:configRequest", function (ev) {
		var meta = document.querySelector('meta[name="csrf-token"]');
		if (meta && meta.content) {
			ev.detail.headers["X-CSRF-Token"] = meta.content;
		}
	});

	// data-since / data-until: relative times, refreshed each second.
	function age(seconds) {
		if (seconds < 60) return seconds + " s ago";
		if (seconds < 3600) return Math.floor(seconds / 60) + " min ago";
		if (seconds < 86400) return Math.floor(seconds / 3600) + " h ago";
		return Math.floor(seconds / 86400) + " d ago";
	}

	function tick() {
		var now = Date.now();
		var els = document.querySelectorAll("[data-since]");
		for (var i = 0; i < els.length; i++) {
			var t = Date.parse(els[i].getAttribute("data-since"));
			if (isNaN(t)) continue;
			setText(els[i], age(Math.max(0, Math.floor((now - t) / 1000))));
		}
		els = document.querySelectorAll("[data-until]");
		for (i = 0; i < els.length; i++) {
			t = Date.parse(els[i].getAttribute("data-until"));
			if (isNaN(t)) continue;
			setText(els[i], Math.max(0, Math.ceil((t - now) / 1000)) + " s");
		}
	}

	// Writing the same text again would still disturb selection and screen
	// readers; only write changes.
	function setText(el, text) {
		if (el.textContent !== text) el.textContent = text;
	}

	// [data-autoscroll]: keep log panes pinned to the bottom while output is
	// appended, unless the reader scrolled up to look at something.
	var pinned = new WeakMap();

	function nearBottom(el) {
		return el.scrollHeight - el.scrollTop - el.clientHeight < 24;
	}

	document.addEventListener("scroll", function (ev) {
		var el = ev.target;
		if (el && el.nodeType === 1 && el.hasAttribute("data-autoscroll")) {
			pinned.set(el, nearBottom(el));
		}
	}, true);

	var observed = new WeakSet();
	var observer = window.MutationObserver ? new MutationObserver(function (records) {
		for (var i = 0; i < records.length; i++) {
			var el = records[i].target.closest ? records[i].target.closest("[data-autoscroll]") : null;
			if (el) stick(el);
		}
	}) : null;

	function stick(el) {
		if (pinned.get(el) !== false) el.scrollTop = el.scrollHeight;
	}

	function scanAutoscroll() {
		var els = document.querySelectorAll("[data-autoscroll]");
		for (var i = 0; i < els.length; i++) {
			var el = els[i];
			if (!observed.has(el)) {
				observed.add(el);
				if (observer) observer.observe(el, { childList: true, subtree: true, characterData: true });
				el.scrollTop = el.scrollHeight;
			}
		}
	}

	function scan() {
		tick();
		scanAutoscroll();
	}

	document.addEventListener("htmx:afterSwap", scan);
	document.addEventListener("htmx:sseMessage", function (ev) {
		var el = ev.target && ev.target.closest ? ev.target.closest("[data-autoscroll]") : null;
		if (el) stick(el);
		scan();
	});

	if (document.readyState === "loading") {
		document.addEventListener("DOMContentLoaded", scan);
	} else {
		scan();
	}
	setInterval(scan, 1000);
})();
