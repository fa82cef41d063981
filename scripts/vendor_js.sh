#!/usr/bin/env bash
# Re-vendor the book's JavaScript into _vendor/ from the npm registry (pinned versions).
# The built pages load these copies, so charts, maths and saved widgets render offline.
# Run by hand when a version changes (and update tests/test_book_assets.py's pins); needs npm.
set -euo pipefail
cd "$(dirname "$0")/.."
VEGA=6.3.0 VEGA_LITE=6.4.1 VEGA_EMBED=7.3.0 MATHJAX=3.2.2 REQUIREJS=2.3.8 HTML_MANAGER=1.0.6
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack -q "vega@$VEGA" "vega-lite@$VEGA_LITE" "vega-embed@$VEGA_EMBED" "mathjax@$MATHJAX" \
  "requirejs@$REQUIREJS" "@jupyter-widgets/html-manager@$HTML_MANAGER" >/dev/null)
unpack() { mkdir -p "$tmp/$1" && tar xzf "$tmp/$2" -C "$tmp/$1"; }
unpack vega "vega-$VEGA.tgz"; unpack vega-lite "vega-lite-$VEGA_LITE.tgz"; unpack vega-embed "vega-embed-$VEGA_EMBED.tgz"
unpack mathjax "mathjax-$MATHJAX.tgz"; unpack requirejs "requirejs-$REQUIREJS.tgz"
unpack html-manager "jupyter-widgets-html-manager-$HTML_MANAGER.tgz"
rm -rf _vendor/vega _vendor/mathjax _vendor/widgets
mkdir -p _vendor/vega _vendor/mathjax/output/chtml/fonts _vendor/widgets
for lib in vega vega-lite vega-embed; do
  cp "$tmp/$lib/package/build/$lib.min.js" _vendor/vega/
  cp "$tmp/$lib/package/LICENSE" "_vendor/vega/LICENSE-$lib"
done
cp "$tmp/mathjax/package/es5/tex-mml-chtml.js" "$tmp/mathjax/package/LICENSE" _vendor/mathjax/
cp -r "$tmp/mathjax/package/es5/output/chtml/fonts/woff-v2" _vendor/mathjax/output/chtml/fonts/
cp "$tmp/requirejs/package/require.js" _vendor/widgets/
cp "$tmp/html-manager/package/dist/embed-amd.js" _vendor/widgets/
cp "$tmp/html-manager/package/dist/"*.woff2 "$tmp/html-manager/package/dist/"*.woff "$tmp/html-manager/package/dist/"*.ttf _vendor/widgets/
cp "$tmp/html-manager/package/LICENSE" _vendor/widgets/LICENSE-html-manager
cp "$tmp/html-manager/package/dist/embed.js.LICENSE.txt" _vendor/widgets/LICENSE-html-manager-bundled.txt
cat > _vendor/widgets/LICENSE-requirejs <<'MIT'
RequireJS is released under the MIT license (its licence header is kept at the top of require.js).

Copyright jQuery Foundation and other contributors, https://jquery.org/

Permission is hereby granted, free of charge, to any person obtaining a copy of this software and
associated documentation files (the "Software"), to deal in the Software without restriction,
including without limitation the rights to use, copy, modify, merge, publish, distribute,
sublicense, and/or sell copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all copies or
substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED, INCLUDING BUT
NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND
NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES
OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM, OUT OF OR IN
CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.
MIT
cat > _vendor/VERSIONS.txt <<VERSIONS
Vendored by scripts/vendor_js.sh from the npm registry:
vega $VEGA (BSD-3-Clause), vega-lite $VEGA_LITE (BSD-3-Clause), vega-embed $VEGA_EMBED (BSD-3-Clause),
mathjax $MATHJAX (Apache-2.0), requirejs $REQUIREJS (MIT), @jupyter-widgets/html-manager $HTML_MANAGER (BSD-3-Clause).
VERSIONS
echo "vendored into _vendor/: $(du -sh _vendor | cut -f1)"
