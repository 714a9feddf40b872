{
  # node-gyp build: the fallback of `npm install` (node-gyp-build) and what prebuildify packs.
  # Sources and libtorch flags (the C++ standard included: 17 for libtorch 1.x, 20 for 2.x)
  # come from scripts/libtorch.mjs, shared with CMakeLists.txt.
  "targets": [
    {
      "target_name": "spin_native",
      "sources": ["<!@(node scripts/libtorch.mjs --sources)"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS"],
      "cflags!": ["-fno-exceptions", "-fno-rtti"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++17"],
      "cflags_cc": ["-fexceptions", "-frtti", "-Wno-unused-parameter", "<!@(node scripts/libtorch.mjs --cflags)"],
      "libraries": ["<!@(node scripts/libtorch.mjs --libs)"],
      "ldflags": ["<!@(node scripts/libtorch.mjs --ldflags)"]
    }
  ]
}
