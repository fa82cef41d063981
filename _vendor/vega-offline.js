// Loaded on every page right after the vendored vega, vega-lite and vega-embed builds.
// A chart saved by altair's own html renderer fetches those libraries from a CDN unless
// VEGA_DEBUG says that version is already on the page: say so, so it uses the local copies.
// (The versions are altair's pins; tests/test_book_assets.py checks them against altair.)
(function () {
  var loaded = window.VEGA_DEBUG = window.VEGA_DEBUG || {};
  loaded.vega_version = "6";
  loaded.vegalite_version = "6.4.1";
  loaded.vegaembed_version = "7";
})();
