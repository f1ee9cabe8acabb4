// corl/io/safetensors.hpp — read and write the safetensors format (Hugging Face), header-only.
//
// Layout of a file: 8 bytes little-endian u64 N, then N bytes of JSON header, then the raw tensor bytes. The header maps
// each tensor name to {"dtype": "F32", "shape": [d0, d1, ...], "data_offsets": [begin, end]} (offsets relative to the
// start of the byte buffer, end exclusive), plus an optional "__metadata__" object of string -> string. Data is
// little-endian, row-major (C order). Spec: https://github.com/huggingface/safetensors ("Format").
//
// Reading validates everything a corrupt or foreign file can get wrong (header length past the end of the file, JSON
// syntax, unknown dtype, negative dims, offsets out of range or not matching dtype x shape, overlapping tensors) and
// throws corl::Error naming the file, the tensor and the condition. Typed access checks dtype and shape.
// This host assumes a little-endian machine (x86-64, aarch64), as the format does.
#pragma once

#include <algorithm>
#include <bit>
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
#include <span>
#include <sstream>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "corl/core/error.hpp"
#include "corl/core/hd.hpp"

namespace corl::io {

static_assert(std::endian::native == std::endian::little, "corl::io::safetensors assumes a little-endian host");

/// Element types of the safetensors format (the subset corl reads and writes).
enum class Dtype { kF64, kF32, kF16, kBF16, kI64, kI32, kI16, kI8, kU8, kBool };

/// Size in bytes of one element.
inline std::size_t dtype_size(Dtype d) {
  switch (d) {
    case Dtype::kF64:
    case Dtype::kI64: return 8;
    case Dtype::kF32:
    case Dtype::kI32: return 4;
    case Dtype::kF16:
    case Dtype::kBF16:
    case Dtype::kI16: return 2;
    case Dtype::kI8:
    case Dtype::kU8:
    case Dtype::kBool: return 1;
  }
  return 0;
}

/// The format's spelling of a dtype ("F32", "BF16", ...).
inline const char* dtype_name(Dtype d) {
  switch (d) {
    case Dtype::kF64: return "F64";
    case Dtype::kF32: return "F32";
    case Dtype::kF16: return "F16";
    case Dtype::kBF16: return "BF16";
    case Dtype::kI64: return "I64";
    case Dtype::kI32: return "I32";
    case Dtype::kI16: return "I16";
    case Dtype::kI8: return "I8";
    case Dtype::kU8: return "U8";
    case Dtype::kBool: return "BOOL";
  }
  return "?";
}

/// Parses a dtype name; returns false for names corl does not handle.
inline bool parse_dtype(std::string_view s, Dtype* out) {
  static constexpr std::pair<const char*, Dtype> kNames[] = {
      {"F64", Dtype::kF64}, {"F32", Dtype::kF32}, {"F16", Dtype::kF16}, {"BF16", Dtype::kBF16},
      {"I64", Dtype::kI64}, {"I32", Dtype::kI32}, {"I16", Dtype::kI16}, {"I8", Dtype::kI8},
      {"U8", Dtype::kU8},   {"BOOL", Dtype::kBool}};
  for (const auto& [name, d] : kNames) {
    if (s == name) {
      *out = d;
      return true;
    }
  }
  return false;
}

/// The dtype of a C++ element type (float -> F32, double -> F64, integers by width).
template <class T>
constexpr Dtype dtype_of() {
  if constexpr (std::is_same_v<T, double>) return Dtype::kF64;
  else if constexpr (std::is_same_v<T, float>) return Dtype::kF32;
  else if constexpr (std::is_same_v<T, std::int64_t>) return Dtype::kI64;
  else if constexpr (std::is_same_v<T, std::int32_t>) return Dtype::kI32;
  else if constexpr (std::is_same_v<T, std::int16_t>) return Dtype::kI16;
  else if constexpr (std::is_same_v<T, std::int8_t>) return Dtype::kI8;
  else if constexpr (std::is_same_v<T, std::uint8_t>) return Dtype::kU8;
  else static_assert(sizeof(T) == 0, "corl::io::dtype_of: no safetensors dtype for this element type");
}

/// Shape of a tensor, printed as [d0, d1, ...] in messages.
using Shape = std::vector<index_t>;

inline std::string shape_string(const Shape& s) {
  std::ostringstream os;
  os << '[';
  for (std::size_t i = 0; i < s.size(); ++i) os << (i ? ", " : "") << s[i];
  os << ']';
  return os.str();
}

inline index_t shape_numel(const Shape& s) {
  index_t n = 1;
  for (index_t d : s) n *= d;
  return n;
}

/// One tensor's header entry.
struct TensorInfo {
  std::string name;
  Dtype dtype = Dtype::kF32;
  Shape shape;
  std::size_t begin = 0;  ///< offset of the first byte in the data buffer
  std::size_t end = 0;    ///< one past the last byte
};

namespace detail {

/// A minimal JSON reader for safetensors headers: objects, arrays, strings (with escapes), integers, and the literals
/// true/false/null (skipped). Errors name the file and the byte position inside the header.
class HeaderParser {
 public:
  HeaderParser(std::string_view text, std::string where) : s_(text), where_(std::move(where)) {}

  [[noreturn]] void error(const std::string& what) const {
    fail(where_, ": bad safetensors header JSON at byte ", pos_, ": ", what);
  }
  void skip_ws() {
    while (pos_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[pos_]))) ++pos_;
  }
  bool peek(char c) {
    skip_ws();
    return pos_ < s_.size() && s_[pos_] == c;
  }
  void expect(char c) {
    skip_ws();
    if (pos_ >= s_.size() || s_[pos_] != c) error(std::string("expected '") + c + "'");
    ++pos_;
  }
  bool at_end() {
    skip_ws();
    return pos_ >= s_.size();
  }
  std::string string() {
    expect('"');
    std::string out;
    while (true) {
      if (pos_ >= s_.size()) error("unterminated string");
      const char c = s_[pos_++];
      if (c == '"') break;
      if (c != '\\') {
        out.push_back(c);
        continue;
      }
      if (pos_ >= s_.size()) error("unterminated escape");
      const char e = s_[pos_++];
      switch (e) {
        case '"': out.push_back('"'); break;
        case '\\': out.push_back('\\'); break;
        case '/': out.push_back('/'); break;
        case 'b': out.push_back('\b'); break;
        case 'f': out.push_back('\f'); break;
        case 'n': out.push_back('\n'); break;
        case 'r': out.push_back('\r'); break;
        case 't': out.push_back('\t'); break;
        case 'u': {
          if (pos_ + 4 > s_.size()) error("short \\u escape");
          unsigned code = 0;
          for (int i = 0; i < 4; ++i) {
            const char h = s_[pos_++];
            code <<= 4;
            if (h >= '0' && h <= '9') code |= static_cast<unsigned>(h - '0');
            else if (h >= 'a' && h <= 'f') code |= static_cast<unsigned>(h - 'a' + 10);
            else if (h >= 'A' && h <= 'F') code |= static_cast<unsigned>(h - 'A' + 10);
            else error("bad hex digit in \\u escape");
          }
          if (code < 0x80) {
            out.push_back(static_cast<char>(code));
          } else if (code < 0x800) {
            out.push_back(static_cast<char>(0xC0 | (code >> 6)));
            out.push_back(static_cast<char>(0x80 | (code & 0x3F)));
          } else {
            out.push_back(static_cast<char>(0xE0 | (code >> 12)));
            out.push_back(static_cast<char>(0x80 | ((code >> 6) & 0x3F)));
            out.push_back(static_cast<char>(0x80 | (code & 0x3F)));
          }
          break;
        }
        default: error(std::string("unknown escape \\") + e);
      }
    }
    return out;
  }
  std::int64_t integer() {
    skip_ws();
    const std::size_t start = pos_;
    bool neg = false;
    if (pos_ < s_.size() && s_[pos_] == '-') {
      neg = true;
      ++pos_;
    }
    if (pos_ >= s_.size() || !std::isdigit(static_cast<unsigned char>(s_[pos_]))) error("expected an integer");
    std::uint64_t v = 0;
    while (pos_ < s_.size() && std::isdigit(static_cast<unsigned char>(s_[pos_]))) {
      const unsigned digit = static_cast<unsigned>(s_[pos_++] - '0');
      if (v > (UINT64_MAX - digit) / 10 || v > static_cast<std::uint64_t>(INT64_MAX)) {
        pos_ = start;
        error("integer out of range");
      }
      v = v * 10 + digit;
    }
    if (pos_ < s_.size() && (s_[pos_] == '.' || s_[pos_] == 'e' || s_[pos_] == 'E')) error("expected an integer");
    return neg ? -static_cast<std::int64_t>(v) : static_cast<std::int64_t>(v);
  }
  std::vector<std::int64_t> integer_array() {
    std::vector<std::int64_t> out;
    expect('[');
    if (peek(']')) {
      ++pos_;
      return out;
    }
    while (true) {
      out.push_back(integer());
      if (peek(',')) {
        ++pos_;
        continue;
      }
      expect(']');
      return out;
    }
  }
  /// Skips any JSON value (used for unknown keys).
  void skip_value() {
    skip_ws();
    if (pos_ >= s_.size()) error("expected a value");
    const char c = s_[pos_];
    if (c == '"') {
      string();
    } else if (c == '{' || c == '[') {
      const char close = c == '{' ? '}' : ']';
      ++pos_;
      if (peek(close)) {
        ++pos_;
        return;
      }
      while (true) {
        if (c == '{') {
          string();
          expect(':');
        }
        skip_value();
        if (peek(',')) {
          ++pos_;
          continue;
        }
        expect(close);
        return;
      }
    } else {
      const std::size_t start = pos_;
      while (pos_ < s_.size() && (std::isalnum(static_cast<unsigned char>(s_[pos_])) || s_[pos_] == '-' ||
                                  s_[pos_] == '+' || s_[pos_] == '.'))
        ++pos_;
      if (pos_ == start) error(std::string("unexpected character '") + c + "'");
    }
  }

 private:
  std::string_view s_;
  std::string where_;
  std::size_t pos_ = 0;
};

inline void append_json_string(std::string& out, std::string_view s) {
  out.push_back('"');
  for (const char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          static constexpr char kHex[] = "0123456789abcdef";
          out += "\\u00";
          out.push_back(kHex[(c >> 4) & 0xF]);
          out.push_back(kHex[c & 0xF]);
        } else {
          out.push_back(c);
        }
    }
  }
  out.push_back('"');
}

}  // namespace detail

/// A safetensors file read fully into memory. Tensors keep the order of their data offsets.
class SafetensorsFile {
 public:
  /// Reads and validates `path`; throws corl::Error (missing file, truncated, bad JSON, bad offsets, ...).
  static SafetensorsFile read(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    require(static_cast<bool>(in), "corl::io::SafetensorsFile::read: cannot open '", path,
            "' (missing file or no permission)");
    std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    return parse(std::span<const char>(bytes.data(), bytes.size()), path);
  }

  /// Parses an in-memory image of a file; `where` names it in messages.
  static SafetensorsFile parse(std::span<const char> bytes, const std::string& where) {
    const std::string ctx = "corl::io::SafetensorsFile: '" + where + "'";
    require(bytes.size() >= 8, ctx, ": truncated file: ", bytes.size(), " bytes, expected at least 8 (header length)");
    std::uint64_t header_len = 0;
    std::memcpy(&header_len, bytes.data(), 8);
    require(header_len <= bytes.size() - 8, ctx, ": truncated file: header length ", header_len, " but only ",
            bytes.size() - 8, " bytes follow");
    SafetensorsFile f;
    f.where_ = where;
    const std::string_view header(bytes.data() + 8, static_cast<std::size_t>(header_len));
    const std::size_t data_begin = 8 + static_cast<std::size_t>(header_len);
    f.data_.assign(bytes.begin() + static_cast<std::ptrdiff_t>(data_begin), bytes.end());

    detail::HeaderParser p(header, ctx);
    p.expect('{');
    bool first = true;
    while (!p.peek('}')) {
      if (!first) p.expect(',');
      first = false;
      const std::string key = p.string();
      p.expect(':');
      if (key == "__metadata__") {
        p.expect('{');
        bool first_meta = true;
        while (!p.peek('}')) {
          if (!first_meta) p.expect(',');
          first_meta = false;
          std::string mk = p.string();
          p.expect(':');
          f.metadata_[std::move(mk)] = p.string();
        }
        p.expect('}');
        continue;
      }
      TensorInfo t;
      t.name = key;
      bool has_dtype = false, has_shape = false, has_offsets = false;
      p.expect('{');
      bool first_field = true;
      while (!p.peek('}')) {
        if (!first_field) p.expect(',');
        first_field = false;
        const std::string field = p.string();
        p.expect(':');
        if (field == "dtype") {
          const std::string d = p.string();
          require(parse_dtype(d, &t.dtype), ctx, ": tensor '", key, "': unknown dtype \"", d, "\"");
          has_dtype = true;
        } else if (field == "shape") {
          for (std::int64_t dim : p.integer_array()) {
            require(dim >= 0, ctx, ": tensor '", key, "': shape has a negative dimension ", dim);
            t.shape.push_back(dim);
          }
          has_shape = true;
        } else if (field == "data_offsets") {
          const auto off = p.integer_array();
          require(off.size() == 2, ctx, ": tensor '", key, "': data_offsets has ", off.size(),
                  " entries, expected 2");
          require(off[0] >= 0 && off[1] >= off[0], ctx, ": tensor '", key, "': data_offsets [", off[0], ", ",
                  off[1], "] must satisfy 0 <= begin <= end");
          t.begin = static_cast<std::size_t>(off[0]);
          t.end = static_cast<std::size_t>(off[1]);
          has_offsets = true;
        } else {
          p.skip_value();
        }
      }
      p.expect('}');
      require(has_dtype && has_shape && has_offsets, ctx, ": tensor '", key,
              "' lacks one of \"dtype\", \"shape\", \"data_offsets\"");
      require(t.end <= f.data_.size(), ctx, ": truncated file: tensor '", key, "' ends at byte ", t.end,
              " of the data buffer, which has only ", f.data_.size(), " bytes");
      const std::size_t expected = static_cast<std::size_t>(shape_numel(t.shape)) * dtype_size(t.dtype);
      require(t.end - t.begin == expected, ctx, ": tensor '", key, "': data_offsets span ", t.end - t.begin,
              " bytes, expected ", expected, " for dtype ", dtype_name(t.dtype), " and shape ",
              shape_string(t.shape));
      require(f.index_.find(key) == f.index_.end(), ctx, ": tensor '", key, "' appears twice in the header");
      f.index_[key] = f.tensors_.size();
      f.tensors_.push_back(std::move(t));
    }
    p.expect('}');
    require(p.at_end(), ctx, ": trailing characters after the header JSON object");

    std::vector<const TensorInfo*> by_offset;
    for (const auto& t : f.tensors_) by_offset.push_back(&t);
    std::sort(by_offset.begin(), by_offset.end(),
              [](const TensorInfo* a, const TensorInfo* b) { return a->begin < b->begin; });
    for (std::size_t i = 1; i < by_offset.size(); ++i) {
      require(by_offset[i]->begin >= by_offset[i - 1]->end, ctx, ": tensors '", by_offset[i - 1]->name, "' and '",
              by_offset[i]->name, "' overlap in the data buffer");
    }
    return f;
  }

  const std::string& where() const { return where_; }
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  bool contains(const std::string& name) const { return index_.count(name) != 0; }

  /// The header entry of `name`; throws corl::Error when the file has no such tensor.
  const TensorInfo& info(const std::string& name) const {
    const auto it = index_.find(name);
    require(it != index_.end(), "corl::io::SafetensorsFile: '", where_, "': missing tensor '", name, "'");
    return tensors_[it->second];
  }

  /// Raw bytes of `name`.
  std::span<const char> bytes(const std::string& name) const {
    const TensorInfo& t = info(name);
    return std::span<const char>(data_.data() + t.begin, t.end - t.begin);
  }

  /// Copies tensor `name` into `out` after checking its dtype is exactly T's and its shape is `expected_shape`.
  template <class T>
  void read_into(const std::string& name, const Shape& expected_shape, std::span<T> out) const {
    const TensorInfo& t = info(name);
    require(t.dtype == dtype_of<T>(), "corl::io::SafetensorsFile: '", where_, "': tensor '", name, "' has dtype ",
            dtype_name(t.dtype), ", expected ", dtype_name(dtype_of<T>()));
    require(t.shape == expected_shape, "corl::io::SafetensorsFile: '", where_, "': tensor '", name, "' has shape ",
            shape_string(t.shape), ", expected ", shape_string(expected_shape));
    require(static_cast<index_t>(out.size()) == shape_numel(t.shape), "corl::io::SafetensorsFile::read_into: tensor '",
            name, "': destination has ", out.size(), " elements, expected ", shape_numel(t.shape));
    if (!out.empty()) std::memcpy(out.data(), data_.data() + t.begin, t.end - t.begin);
  }

  /// Tensor `name` as a vector of T (dtype and shape checked as in read_into).
  template <class T>
  std::vector<T> get(const std::string& name, const Shape& expected_shape) const {
    std::vector<T> out(static_cast<std::size_t>(shape_numel(expected_shape)));
    read_into<T>(name, expected_shape, std::span<T>(out));
    return out;
  }

 private:
  std::string where_;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, std::size_t> index_;
  std::map<std::string, std::string> metadata_;
  std::vector<char> data_;
};

/// Collects tensors and metadata, then writes one safetensors file (tensors in insertion order, header padded with
/// spaces to a multiple of 8 bytes as the reference implementation does).
class SafetensorsWriter {
 public:
  void set_metadata(const std::string& key, const std::string& value) { metadata_[key] = value; }

  /// Adds a tensor from raw little-endian bytes.
  void add_bytes(const std::string& name, Dtype dtype, const Shape& shape, std::span<const char> bytes) {
    require(!name.empty() && name != "__metadata__", "corl::io::SafetensorsWriter::add: invalid tensor name '", name,
            "'");
    for (const auto& t : tensors_)
      require(t.name != name, "corl::io::SafetensorsWriter::add: tensor '", name, "' added twice");
    for (index_t d : shape)
      require(d >= 0, "corl::io::SafetensorsWriter::add: tensor '", name, "' has negative dimension ", d);
    const std::size_t expected = static_cast<std::size_t>(shape_numel(shape)) * dtype_size(dtype);
    require(bytes.size() == expected, "corl::io::SafetensorsWriter::add: tensor '", name, "' has ", bytes.size(),
            " bytes, expected ", expected, " for dtype ", dtype_name(dtype), " and shape ", shape_string(shape));
    TensorInfo t;
    t.name = name;
    t.dtype = dtype;
    t.shape = shape;
    t.begin = data_.size();
    data_.insert(data_.end(), bytes.begin(), bytes.end());
    t.end = data_.size();
    tensors_.push_back(std::move(t));
  }

  /// Adds a tensor of element type T (dtype from T); `values.size()` must equal the product of `shape`.
  template <class T>
  void add(const std::string& name, const Shape& shape, std::span<const T> values) {
    add_bytes(name, dtype_of<T>(), shape,
              std::span<const char>(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(T)));
  }

  /// The header JSON (without padding).
  std::string header_json() const {
    std::string h = "{";
    bool first = true;
    if (!metadata_.empty()) {
      h += "\"__metadata__\":{";
      bool first_meta = true;
      for (const auto& [k, v] : metadata_) {
        if (!first_meta) h += ',';
        first_meta = false;
        detail::append_json_string(h, k);
        h += ':';
        detail::append_json_string(h, v);
      }
      h += '}';
      first = false;
    }
    for (const auto& t : tensors_) {
      if (!first) h += ',';
      first = false;
      detail::append_json_string(h, t.name);
      h += ":{\"dtype\":\"";
      h += dtype_name(t.dtype);
      h += "\",\"shape\":[";
      for (std::size_t i = 0; i < t.shape.size(); ++i) {
        if (i) h += ',';
        h += std::to_string(t.shape[i]);
      }
      h += "],\"data_offsets\":[" + std::to_string(t.begin) + "," + std::to_string(t.end) + "]}";
    }
    h += '}';
    return h;
  }

  /// The whole file image.
  std::vector<char> serialize() const {
    std::string h = header_json();
    while (h.size() % 8 != 0) h.push_back(' ');
    const std::uint64_t n = h.size();
    std::vector<char> out(8 + h.size() + data_.size());
    std::memcpy(out.data(), &n, 8);
    std::memcpy(out.data() + 8, h.data(), h.size());
    if (!data_.empty()) std::memcpy(out.data() + 8 + h.size(), data_.data(), data_.size());
    return out;
  }

  /// Writes the file (to a temporary name, then renamed, so a crash never leaves a half-written checkpoint).
  void write(const std::string& path) const {
    const std::vector<char> bytes = serialize();
    const std::string tmp = path + ".tmp";
    {
      std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
      require(static_cast<bool>(out), "corl::io::SafetensorsWriter::write: cannot open '", tmp, "' for writing");
      out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
      require(static_cast<bool>(out), "corl::io::SafetensorsWriter::write: writing '", tmp, "' failed");
    }
    require(std::rename(tmp.c_str(), path.c_str()) == 0, "corl::io::SafetensorsWriter::write: cannot rename '", tmp,
            "' to '", path, "'");
  }

 private:
  std::vector<TensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
  std::vector<char> data_;
};

}  // namespace corl::io
