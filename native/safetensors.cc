#include "safetensors.h"

#include <ATen/ATen.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "async.h"
#include "dtype.h"
#include "errors.h"
#include "tensor.h"

namespace spin {

namespace {

struct Record {
  std::string name;
  c10::ScalarType dtype;
  std::vector<int64_t> shape;
  uint64_t begin = 0;
  uint64_t end = 0;
};

c10::ScalarType SafetensorsDType(const std::string& name, const std::string& tensor, const std::string& path) {
  static const std::map<std::string, c10::ScalarType> kTypes = {
      {"F32", at::kFloat}, {"F16", at::kHalf},  {"BF16", at::kBFloat16}, {"F64", at::kDouble},
      {"I64", at::kLong},  {"I32", at::kInt},   {"U8", at::kByte},       {"BOOL", at::kBool}};
  const auto found = kTypes.find(name);
  if (found == kTypes.end()) throw SpinError(ErrorCode::kIO, path + ": tensor '" + tensor + "' has unsupported dtype " + name);
  return found->second;
}

std::string ErrnoText(const std::string& what, const std::string& path) {
  return what + " " + path + ": " + std::strerror(errno);
}

// An open file descriptor, closed on every path out.
class File {
 public:
  explicit File(const std::string& path) : fd_(::open(path.c_str(), O_RDONLY | O_CLOEXEC)) {
    if (fd_ < 0) throw SpinError(ErrorCode::kIO, ErrnoText("cannot open", path));
  }
  ~File() { ::close(fd_); }
  File(const File&) = delete;
  File& operator=(const File&) = delete;

  int fd() const { return fd_; }
  struct stat Stat(const std::string& path) const {
    struct stat info;
    if (::fstat(fd_, &info) != 0) throw SpinError(ErrorCode::kIO, ErrnoText("cannot stat", path));
    return info;
  }

 private:
  int fd_;
};

// A read-only view of a whole file, private copy-on-write so tensors can be updated in place
// (training) without touching the file. Unmapped when the last tensor over it goes. Pages not
// yet written still show the file: rewriting it changes those tensors, truncating it makes
// touching them a SIGBUS; so only an explicit option maps.
class Mapping {
 public:
  explicit Mapping(const std::string& path) {
    const File file(path);
    size_ = static_cast<uint64_t>(file.Stat(path).st_size);
    if (size_ > 0) {
      void* data = ::mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_PRIVATE, file.fd(), 0);
      if (data == MAP_FAILED) throw SpinError(ErrorCode::kIO, ErrnoText("cannot map", path));
      data_ = static_cast<uint8_t*>(data);
    }
  }
  ~Mapping() {
    if (data_ != nullptr) ::munmap(data_, size_);
  }
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;

  uint8_t* data() const { return data_; }
  uint64_t size() const { return size_; }

 private:
  uint8_t* data_ = nullptr;
  uint64_t size_ = 0;
};

std::vector<Record> ReadRecords(const Args& args, size_t i, const std::string& path) {
  if (!args.present(i) || !args.at(i).IsArray()) args.Fail(i, "records", "an array of tensor records");
  const Napi::Array array = args.at(i).As<Napi::Array>();
  std::vector<Record> records;
  for (uint32_t k = 0; k < array.Length(); ++k) {
    const Napi::Value item = array.Get(k);
    if (!item.IsObject()) args.Fail(i, "records", "an array of tensor records");
    const Napi::Object object = item.As<Napi::Object>();
    const Napi::Value name = object.Get("name"), dtype = object.Get("dtype"), shape = object.Get("shape"),
                      begin = object.Get("begin"), end = object.Get("end");
    if (!name.IsString() || !dtype.IsString() || !shape.IsArray() || !begin.IsNumber() || !end.IsNumber()) {
      args.Fail(i, "records", "records of {name, dtype, shape, begin, end}");
    }
    Record record;
    record.name = name.As<Napi::String>().Utf8Value();
    record.dtype = SafetensorsDType(dtype.As<Napi::String>().Utf8Value(), record.name, path);
    const Napi::Array dims = shape.As<Napi::Array>();
    for (uint32_t d = 0; d < dims.Length(); ++d) {
      const double size = dims.Get(d).ToNumber().DoubleValue();
      if (!(size >= 0) || size > 9007199254740991.0 || size != static_cast<double>(static_cast<int64_t>(size))) {
        throw SpinError(ErrorCode::kIO, path + ": tensor '" + record.name + "' has an invalid shape");
      }
      record.shape.push_back(static_cast<int64_t>(size));
    }
    const double b = begin.As<Napi::Number>().DoubleValue(), e = end.As<Napi::Number>().DoubleValue();
    if (!(b >= 0) || !(e >= b) || e > 9007199254740991.0) {
      throw SpinError(ErrorCode::kIO, path + ": tensor '" + record.name + "' has invalid data_offsets");
    }
    record.begin = static_cast<uint64_t>(b);
    record.end = static_cast<uint64_t>(e);
    records.push_back(std::move(record));
  }
  return records;
}

// Checks one record against the file's size, with overflow-safe arithmetic.
void CheckRange(const Record& r, uint64_t data_start, uint64_t file_size, const std::string& path) {
  // libtorch computes a contiguous tensor's strides as products of its sizes (a 0 counted as
  // 1): they, and so the byte span, must fit int64 before any tensor is made.
  uint64_t span = c10::elementSize(r.dtype);
  bool empty = false;
  for (int64_t size : r.shape) {
    const uint64_t factor = static_cast<uint64_t>(std::max<int64_t>(size, 1));
    if (span > static_cast<uint64_t>(INT64_MAX) / factor) {
      throw SpinError(ErrorCode::kIO, path + ": tensor '" + r.name + "' shape overflows");
    }
    span *= factor;
    empty = empty || size == 0;
  }
  const uint64_t bytes = empty ? 0 : span;
  if (bytes != r.end - r.begin) {
    throw SpinError(ErrorCode::kIO, path + ": tensor '" + r.name + "' needs " + std::to_string(bytes) +
                                        " bytes for its shape and dtype, data_offsets give " +
                                        std::to_string(r.end - r.begin));
  }
  if (data_start > file_size || r.end > file_size - data_start) {
    throw SpinError(ErrorCode::kIO, path + ": tensor '" + r.name + "' lies beyond the end of the file (truncated?)");
  }
}

std::string Changed(const std::string& path, const Record& r) {
  return path + ": file changed or truncated while loading tensor '" + r.name + "'";
}

// Reads one record's bytes with pread; the file ending first means it shrank after its size
// was checked.
void ReadRecord(const File& file, const std::string& path, const Record& r, uint64_t data_start, uint8_t* out) {
  const uint64_t bytes = r.end - r.begin;
  const uint64_t offset = data_start + r.begin;
  uint64_t done = 0;
  while (done < bytes) {
    // Linux reads at most ~2 GiB per call.
    const size_t chunk = static_cast<size_t>(std::min<uint64_t>(bytes - done, uint64_t{1} << 30));
    const ssize_t got = ::pread(file.fd(), out + done, chunk, static_cast<off_t>(offset + done));
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) throw SpinError(ErrorCode::kIO, ErrnoText("cannot read tensor '" + r.name + "' of", path));
    if (got == 0) {
      throw SpinError(ErrorCode::kIO, Changed(path, r) + " (the file ends " + std::to_string(done) + " bytes into its " +
                                          std::to_string(bytes) + ")");
    }
    done += static_cast<uint64_t>(got);
  }
}

bool SameVersion(const struct stat& a, const struct stat& b) {
  return a.st_size == b.st_size && a.st_mtim.tv_sec == b.st_mtim.tv_sec && a.st_mtim.tv_nsec == b.st_mtim.tv_nsec;
}

}  // namespace

Napi::Value MapSafetensors(const Napi::CallbackInfo& info) {
  SPIN_ENTRY("mapSafetensors", {
    args.ExpectAtMost(6);
    const std::string path = args.String(0, "path");
    const int64_t data_start = args.Int(1, "dataStart");
    if (data_start < 8) throw SpinError(ErrorCode::kIO, path + ": data must start after the 8-byte header length");
    std::vector<Record> records = ReadRecords(args, 2, path);
    const auto dtype_name = args.OptionalString(3, "dtype");
    const auto device_name = args.OptionalString(4, "device");
    const bool map = args.OptionalBool(5, "mmap", false);
    const std::optional<c10::ScalarType> target = dtype_name ? std::optional(ParseDType(*dtype_name)) : std::nullopt;
    const c10::Device device = device_name ? ParseDevice(*device_name) : c10::Device(c10::kCPU);
    using Named = std::vector<std::pair<std::string, at::Tensor>>;
    return RunAsync<Named>(
        info.Env(), args.call(), device,
        [path, start = static_cast<uint64_t>(data_start), records = std::move(records), target, device, map]() {
          Named tensors;
          auto keep = [&](const Record& r, at::Tensor tensor) {
            if (target && at::isFloatingType(r.dtype)) tensor = tensor.to(*target);
            if (!device.is_cpu()) tensor = tensor.to(device);
            tensors.emplace_back(r.name, std::move(tensor));
          };
          const auto options = [](const Record& r) { return at::TensorOptions().dtype(r.dtype); };
          if (map) {
            auto mapping = std::make_shared<Mapping>(path);
            for (const Record& r : records) CheckRange(r, start, mapping->size(), path);
            for (const Record& r : records) {
              uint8_t* bytes = mapping->data() + start + r.begin;
              at::Tensor tensor;
              if (r.end == r.begin) {
                tensor = at::empty(r.shape, options(r));
              } else {
                tensor = at::from_blob(bytes, r.shape, [mapping](void*) {}, options(r));
                // Misaligned data (legal in the format, unusual in practice) is copied out.
                if (reinterpret_cast<uintptr_t>(bytes) % c10::elementSize(r.dtype) != 0) tensor = tensor.clone();
              }
              keep(r, std::move(tensor));
            }
            return tensors;
          }
          // Owned: read into tensors of this process, so the file may change afterwards. A
          // change during the load (a new size or modification time) is an error, not a model
          // made of two versions of the file.
          const File file(path);
          const struct stat before = file.Stat(path);
          for (const Record& r : records) CheckRange(r, start, static_cast<uint64_t>(before.st_size), path);
          for (const Record& r : records) {
            at::Tensor tensor = at::empty(r.shape, options(r));
            ReadRecord(file, path, r, start, static_cast<uint8_t*>(tensor.data_ptr()));
            if (!SameVersion(before, file.Stat(path))) throw SpinError(ErrorCode::kIO, Changed(path, r));
            keep(r, std::move(tensor));
          }
          return tensors;
        },
        // [name, tensor] pairs: names from a file may be anything ("__proto__", NUL bytes), so
        // they are never used as property keys here.
        [](Napi::Env env, Named& tensors) -> Napi::Value {
          Napi::Array out = Napi::Array::New(env, tensors.size());
          for (size_t i = 0; i < tensors.size(); ++i) {
            Napi::Array pair = Napi::Array::New(env, 2);
            pair.Set(0u, Napi::String::New(env, tensors[i].first));
            pair.Set(1u, Tensor::Wrap(env, std::move(tensors[i].second)));
            out.Set(static_cast<uint32_t>(i), pair);
          }
          return out;
        });
  });
}

Napi::Value WriteSafetensors(const Napi::CallbackInfo& info) {
  SPIN_ENTRY("writeSafetensors", {
    args.ExpectAtMost(3);
    const std::string path = args.String(0, "path");
    if (!args.present(1) || !args.at(1).IsTypedArray()) args.Fail(1, "header", "a Uint8Array");
    const Napi::Uint8Array header_array = args.at(1).As<Napi::Uint8Array>();
    std::vector<uint8_t> header(header_array.Data(), header_array.Data() + header_array.ByteLength());
    if (!args.present(2) || !args.at(2).IsArray()) args.Fail(2, "tensors", "an array of Tensors");
    const Napi::Array list = args.at(2).As<Napi::Array>();
    std::vector<at::Tensor> tensors;
    for (uint32_t k = 0; k < list.Length(); ++k) {
      if (!Tensor::Is(info.Env(), list.Get(k))) args.Fail(2, "tensors", "an array of Tensors");
      tensors.push_back(Tensor::FromValue(list.Get(k), args.call()));
    }
    return RunAsync<bool>(
        info.Env(), args.call(), c10::Device(c10::kCPU),
        [path, header = std::move(header), tensors = std::move(tensors)]() {
          static std::atomic<uint64_t> counter{0};
          const std::string temp = path + ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
          const int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
          if (fd < 0) throw SpinError(ErrorCode::kIO, ErrnoText("cannot create", temp));
          auto fail = [&](const std::string& what) {
            const std::string message = ErrnoText(what, temp);
            ::close(fd);
            ::unlink(temp.c_str());
            throw SpinError(ErrorCode::kIO, message);
          };
          auto write_all = [&](const uint8_t* data, size_t size) {
            while (size > 0) {
              const ssize_t written = ::write(fd, data, size);
              if (written < 0 && errno == EINTR) continue;
              if (written <= 0) fail("cannot write");
              data += written;
              size -= static_cast<size_t>(written);
            }
          };
          write_all(header.data(), header.size());
          for (const at::Tensor& tensor : tensors) {
            const at::Tensor host = tensor.detach().to(c10::kCPU).contiguous();
            write_all(static_cast<const uint8_t*>(host.data_ptr()), host.numel() * host.element_size());
          }
          if (::fsync(fd) != 0) fail("cannot fsync");
          if (::close(fd) != 0) {
            ::unlink(temp.c_str());
            throw SpinError(ErrorCode::kIO, ErrnoText("cannot close", temp));
          }
          if (::rename(temp.c_str(), path.c_str()) != 0) {
            const std::string message = ErrnoText("cannot rename onto", path);
            ::unlink(temp.c_str());
            throw SpinError(ErrorCode::kIO, message);
          }
          // Make the rename itself durable.
          const std::string dir = path.find('/') == std::string::npos ? "." : path.substr(0, path.rfind('/') + 1);
          const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
          if (dir_fd >= 0) {
            ::fsync(dir_fd);
            ::close(dir_fd);
          }
          return true;
        },
        [](Napi::Env env, bool&) -> Napi::Value { return env.Undefined(); });
  });
}

}  // namespace spin
