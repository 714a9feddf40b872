// safetensors I/O. lib/model/safetensors.ts parses and validates the JSON header (and builds it
// for writing); this file reads (or maps) tensor bytes from disk and writes files atomically.
// It re-checks every byte range against the file, so a bad header can never read outside it.
#pragma once

#include <napi.h>

namespace spin {

// mapSafetensors(path, dataStart, records, dtype?, device?, mmap?) -> Promise<[name, NativeTensor][]>:
// despite the name, by default the bytes are read into memory the process owns (a file that changes during the read is an
// IO error); with mmap, CPU tensors of the file's dtype are views of a private mapping instead,
// which see later rewrites of the file and fault (SIGBUS) if it is truncated.
Napi::Value MapSafetensors(const Napi::CallbackInfo& info);

// writeSafetensors(path, header, tensors) -> Promise<void>: header bytes (length prefix
// included) then each tensor's bytes, to a temp file that is fsynced and renamed over path.
Napi::Value WriteSafetensors(const Napi::CallbackInfo& info);

}  // namespace spin
