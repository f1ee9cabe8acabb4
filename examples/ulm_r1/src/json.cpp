// json.cpp — recursive-descent JSON parser and compact writer (see json.hpp).
#include "json.hpp"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "corl/core/error.hpp"

namespace ulm {

std::string_view Json::type_name() const {
  switch (value_.index()) {
    case 0: return "null";
    case 1: return "bool";
    case 2: return "number";
    case 3: return "string";
    case 4: return "array";
    default: return "object";
  }
}

bool Json::as_bool() const {
  corl::require(is_bool(), "Json::as_bool: value is a ", type_name(), ", expected bool");
  return std::get<bool>(value_);
}
double Json::as_number() const {
  corl::require(is_number(), "Json::as_number: value is a ", type_name(), ", expected number");
  return std::get<double>(value_);
}
std::int64_t Json::as_int() const {
  const double x = as_number();
  corl::require(std::floor(x) == x && std::fabs(x) <= 9007199254740992.0, "Json::as_int: value ", x,
                ", expected an integer within +-2^53");
  return static_cast<std::int64_t>(x);
}
const std::string& Json::as_string() const {
  corl::require(is_string(), "Json::as_string: value is a ", type_name(), ", expected string");
  return std::get<std::string>(value_);
}
const Json::Array& Json::as_array() const {
  corl::require(is_array(), "Json::as_array: value is a ", type_name(), ", expected array");
  return std::get<Array>(value_);
}
Json::Array& Json::as_array() {
  corl::require(is_array(), "Json::as_array: value is a ", type_name(), ", expected array");
  return std::get<Array>(value_);
}
const Json::Object& Json::as_object() const {
  corl::require(is_object(), "Json::as_object: value is a ", type_name(), ", expected object");
  return std::get<Object>(value_);
}
Json::Object& Json::as_object() {
  corl::require(is_object(), "Json::as_object: value is a ", type_name(), ", expected object");
  return std::get<Object>(value_);
}

const Json* Json::find(std::string_view key) const {
  for (const auto& [k, v] : as_object())
    if (k == key) return &v;
  return nullptr;
}
const Json& Json::at(std::string_view key) const {
  const Json* v = find(key);
  corl::require(v != nullptr, "Json::at: missing key '", key, "'");
  return *v;
}
Json& Json::set(std::string_view key, Json value) {
  if (is_null()) value_ = Object{};
  Object& object = as_object();
  for (auto& [k, v] : object) {
    if (k == key) {
      v = std::move(value);
      return v;
    }
  }
  object.emplace_back(std::string(key), std::move(value));
  return object.back().second;
}
Json& Json::push_back(Json value) {
  if (is_null()) value_ = Array{};
  Array& array = as_array();
  array.push_back(std::move(value));
  return array.back();
}

// ---- parser ----------------------------------------------------------------------------------------------------

namespace {

class Parser {
 public:
  Parser(std::string_view text, std::string_view source) : text_(text), source_(source) {}

  Json document() {
    skip_space();
    Json v = value(0);
    skip_space();
    if (pos_ != text_.size()) error("unexpected '", text_[pos_], "' after the value");
    return v;
  }

 private:
  static constexpr int kMaxDepth = 256;

  template <class... Parts>
  [[noreturn]] void error(Parts&&... parts) const {
    corl::fail(source_, ": column ", pos_ + 1, ": ", std::forward<Parts>(parts)...);
  }

  void skip_space() {
    while (pos_ < text_.size() &&
           (text_[pos_] == ' ' || text_[pos_] == '\t' || text_[pos_] == '\n' || text_[pos_] == '\r'))
      ++pos_;
  }

  Json value(int depth) {
    if (depth > kMaxDepth) error("nesting deeper than ", kMaxDepth);
    if (pos_ >= text_.size()) error("unexpected end of input, expected a value");
    const char c = text_[pos_];
    if (c == '{') return object(depth);
    if (c == '[') return array(depth);
    if (c == '"') return Json(string());
    if (c == 't') return literal("true", Json(true));
    if (c == 'f') return literal("false", Json(false));
    if (c == 'n') return literal("null", Json());
    if (c == '-' || (c >= '0' && c <= '9')) return number();
    error("unexpected '", c, "', expected a value");
  }

  Json literal(std::string_view word, Json v) {
    if (text_.substr(pos_, word.size()) != word) error("invalid literal, expected '", word, "'");
    pos_ += word.size();
    return v;
  }

  Json number() {
    const std::size_t start = pos_;
    auto digits = [&] {
      const std::size_t s = pos_;
      while (pos_ < text_.size() && text_[pos_] >= '0' && text_[pos_] <= '9') ++pos_;
      return pos_ - s;
    };
    if (text_[pos_] == '-') ++pos_;
    if (pos_ < text_.size() && text_[pos_] == '0') {
      ++pos_;
    } else if (digits() == 0) {
      error("invalid number, expected a digit");
    }
    if (pos_ < text_.size() && text_[pos_] == '.') {
      ++pos_;
      if (digits() == 0) error("invalid number, expected a digit after '.'");
    }
    if (pos_ < text_.size() && (text_[pos_] == 'e' || text_[pos_] == 'E')) {
      ++pos_;
      if (pos_ < text_.size() && (text_[pos_] == '+' || text_[pos_] == '-')) ++pos_;
      if (digits() == 0) error("invalid number, expected a digit in the exponent");
    }
    double x = 0.0;
    const auto [ptr, ec] = std::from_chars(text_.data() + start, text_.data() + pos_, x);
    if (ec != std::errc() || ptr != text_.data() + pos_ || !std::isfinite(x)) {
      pos_ = start;
      error("number out of range");
    }
    return Json(x);
  }

  unsigned hex4() {
    if (pos_ + 4 > text_.size()) error("truncated \\u escape");
    unsigned code = 0;
    for (int i = 0; i < 4; ++i) {
      const char h = text_[pos_++];
      code <<= 4;
      if (h >= '0' && h <= '9') code |= static_cast<unsigned>(h - '0');
      else if (h >= 'a' && h <= 'f') code |= static_cast<unsigned>(h - 'a' + 10);
      else if (h >= 'A' && h <= 'F') code |= static_cast<unsigned>(h - 'A' + 10);
      else error("invalid hex digit '", h, "' in \\u escape");
    }
    return code;
  }

  static void append_utf8(std::string& out, unsigned cp) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }

  std::string string() {
    ++pos_;  // opening quote
    std::string out;
    while (true) {
      if (pos_ >= text_.size()) error("unterminated string");
      const char c = text_[pos_];
      if (c == '"') {
        ++pos_;
        return out;
      }
      if (static_cast<unsigned char>(c) < 0x20) error("control character in string, expected it escaped");
      if (c != '\\') {
        out += c;
        ++pos_;
        continue;
      }
      ++pos_;
      if (pos_ >= text_.size()) error("unterminated escape");
      const char e = text_[pos_++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          unsigned cp = hex4();
          if (cp >= 0xD800 && cp < 0xDC00) {
            if (text_.substr(pos_, 2) != "\\u") error("lone high surrogate in \\u escape");
            pos_ += 2;
            const unsigned low = hex4();
            if (low < 0xDC00 || low >= 0xE000) error("invalid low surrogate in \\u escape");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
          } else if (cp >= 0xDC00 && cp < 0xE000) {
            error("lone low surrogate in \\u escape");
          }
          append_utf8(out, cp);
          break;
        }
        default: --pos_; error("invalid escape '\\", e, "'");
      }
    }
  }

  Json array(int depth) {
    ++pos_;
    Json out = Json::array();
    skip_space();
    if (pos_ < text_.size() && text_[pos_] == ']') {
      ++pos_;
      return out;
    }
    while (true) {
      skip_space();
      out.push_back(value(depth + 1));
      skip_space();
      if (pos_ >= text_.size()) error("unterminated array, expected ',' or ']'");
      if (text_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (text_[pos_] == ']') {
        ++pos_;
        return out;
      }
      error("unexpected '", text_[pos_], "' in array, expected ',' or ']'");
    }
  }

  Json object(int depth) {
    ++pos_;
    Json out = Json::object();
    skip_space();
    if (pos_ < text_.size() && text_[pos_] == '}') {
      ++pos_;
      return out;
    }
    while (true) {
      skip_space();
      if (pos_ >= text_.size() || text_[pos_] != '"') error("expected a string key in object");
      const std::size_t key_pos = pos_;
      std::string key = string();
      if (out.find(key) != nullptr) {
        pos_ = key_pos;
        error("duplicate key '", key, "'");
      }
      skip_space();
      if (pos_ >= text_.size() || text_[pos_] != ':') error("expected ':' after key '", key, "'");
      ++pos_;
      skip_space();
      out.set(key, value(depth + 1));
      skip_space();
      if (pos_ >= text_.size()) error("unterminated object, expected ',' or '}'");
      if (text_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (text_[pos_] == '}') {
        ++pos_;
        return out;
      }
      error("unexpected '", text_[pos_], "' in object, expected ',' or '}'");
    }
  }

  std::string_view text_;
  std::string_view source_;
  std::size_t pos_ = 0;
};

void dump_string(std::string& out, const std::string& s) {
  out += '"';
  for (const char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(static_cast<unsigned char>(c)));
          out += buf;
        } else {
          out += c;
        }
    }
  }
  out += '"';
}

void dump_to(std::string& out, const Json& v) {
  if (v.is_null()) {
    out += "null";
  } else if (v.is_bool()) {
    out += v.as_bool() ? "true" : "false";
  } else if (v.is_number()) {
    const double x = v.as_number();
    corl::require(std::isfinite(x), "dump_json: number ", x, ", expected a finite value (JSON has no NaN/inf)");
    char buf[32];
    if (std::floor(x) == x && std::fabs(x) < 1e15) {
      std::snprintf(buf, sizeof buf, "%lld", static_cast<long long>(x));
    } else {
      const auto r = std::to_chars(buf, buf + sizeof buf, x);  // shortest round-trip form
      *r.ptr = '\0';
    }
    out += buf;
  } else if (v.is_string()) {
    dump_string(out, v.as_string());
  } else if (v.is_array()) {
    out += '[';
    bool first = true;
    for (const Json& e : v.as_array()) {
      if (!first) out += ',';
      first = false;
      dump_to(out, e);
    }
    out += ']';
  } else {
    out += '{';
    bool first = true;
    for (const auto& [k, e] : v.as_object()) {
      if (!first) out += ',';
      first = false;
      dump_string(out, k);
      out += ':';
      dump_to(out, e);
    }
    out += '}';
  }
}

}  // namespace

Json parse_json(std::string_view text, std::string_view source) { return Parser(text, source).document(); }

std::string dump_json(const Json& value) {
  std::string out;
  dump_to(out, value);
  return out;
}

std::vector<Json> read_jsonl(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  corl::require(static_cast<bool>(in), "read_jsonl: cannot open '", path, "'");
  std::vector<Json> rows;
  std::string line;
  long line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    rows.push_back(parse_json(line, path + ":" + std::to_string(line_no)));
  }
  return rows;
}

void write_jsonl(const std::string& path, const std::vector<Json>& rows) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  corl::require(static_cast<bool>(out), "write_jsonl: cannot open '", path, "' for writing");
  for (const Json& row : rows) out << dump_json(row) << '\n';
  out.flush();
  corl::require(static_cast<bool>(out), "write_jsonl: writing '", path, "' failed");
}

}  // namespace ulm
