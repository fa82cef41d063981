// Loaded on pages with saved widgets, after RequireJS and before the widget manager (embed-amd.js).
(function () {
  if (typeof define !== "function" || !define.amd) return;
  var here = document.currentScript.src.replace(/[?#].*$/, "");
  var folder = here.slice(0, here.lastIndexOf("/") + 1);
  // The widget manager finds its fonts next to its modules' paths: point those at the vendored copy.
  require.config({paths: {"@jupyter-widgets/html-manager/dist": folder + "widgets",
                          "@jupyter-widgets": folder + "widgets"}});
  // altair's charts ask RequireJS for "vega-embed" (a CDN by default): name the copies already on the page.
  define("vega", [], function () { return window.vega; });
  define("vega-lite", [], function () { return window.vegaLite; });
  define("vega-embed", [], function () { return window.vegaEmbed; });
  // The widget manager typesets labels with MathJax 2's MathJax.Hub.Queue; the book loads MathJax 3.
  function hub(mathjax) {
    if (!mathjax || typeof mathjax !== "object" || mathjax.Hub) return;
    mathjax.Hub = {Queue: function (command) {
      var mj = window.MathJax, node = command && command[2];
      if (mj && mj.typesetPromise) mj.startup.promise.then(function () { return mj.typesetPromise(node ? [node] : undefined); });
    }};
  }
  var current = window.MathJax;
  hub(current);
  Object.defineProperty(window, "MathJax", {configurable: true, enumerable: true,
    get: function () { return current; }, set: function (value) { current = value; hub(value); }});
})();
