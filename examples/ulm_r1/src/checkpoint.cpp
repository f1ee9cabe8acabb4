// checkpoint.cpp — see checkpoint.hpp.
#include "checkpoint.hpp"

#include "corl/io/safetensors.hpp"

namespace ulm {

template <class Real>
void save_checkpoint(const Model<Real>& model, const std::string& path,
                     const std::map<std::string, std::string>& extra_metadata) {
  corl::io::SafetensorsWriter w;
  for (const auto& [k, v] : extra_metadata) w.set_metadata(k, v);
  for (const auto& [k, v] : model.config().to_metadata()) w.set_metadata(k, v);
  const auto params = model.parameters();
  for (const ParamInfo& p : model.layout()) {
    w.add<Real>(p.name, p.shape, params.subspan(static_cast<std::size_t>(p.offset), static_cast<std::size_t>(p.size)));
  }
  w.write(path);
}

template <class Real>
Model<Real> load_checkpoint(const std::string& path) {
  const auto file = corl::io::SafetensorsFile::read(path);
  const ModelConfig config = ModelConfig::from_metadata(file.metadata(), path);
  Model<Real> model(config, 0);
  auto params = model.parameters();
  for (const ParamInfo& p : model.layout()) {
    corl::require(file.contains(p.name), "ulm::load_checkpoint: '", path, "': missing tensor '", p.name,
                  "' (expected shape ", corl::io::shape_string(p.shape), ")");
    file.read_into<Real>(p.name, p.shape,
                         params.subspan(static_cast<std::size_t>(p.offset), static_cast<std::size_t>(p.size)));
  }
  for (const auto& t : file.tensors()) {
    bool known = false;
    for (const ParamInfo& p : model.layout()) known = known || p.name == t.name;
    corl::require(known, "ulm::load_checkpoint: '", path, "': unexpected tensor '", t.name, "'");
  }
  return model;
}

std::map<std::string, std::string> checkpoint_metadata(const std::string& path) {
  return corl::io::SafetensorsFile::read(path).metadata();
}

template void save_checkpoint<float>(const Model<float>&, const std::string&,
                                     const std::map<std::string, std::string>&);
template void save_checkpoint<double>(const Model<double>&, const std::string&,
                                      const std::map<std::string, std::string>&);
template Model<float> load_checkpoint<float>(const std::string&);
template Model<double> load_checkpoint<double>(const std::string&);

}  // namespace ulm
