//! A model's float tensors — parameters and BatchNorm running statistics — as named host
//! arrays, and back. Names are the module paths (`backbone.ConvNet.layers.0.bn.running_mean`),
//! stable across runs, unlike burn's random parameter ids: checkpoints, exports and the
//! optimizer state all use them.

use std::collections::HashMap;

use anyhow::{Result, bail};
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::prelude::*;

/// One tensor on the host.
#[derive(Clone, Debug, PartialEq)]
pub struct NamedTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

struct Collector {
    path: Vec<String>,
    out: Vec<NamedTensor>,
}

impl ModuleVisitor for Collector {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let t = param.val();
        let shape = t.dims().to_vec();
        let values = t.into_data().convert::<f32>().try_to_vec::<f32>().expect("float tensor");
        self.out.push(NamedTensor { name: self.path.join("."), shape, values });
    }
}

/// Whether `name` is a BatchNorm running statistic (kept by the layer, not trained).
pub fn is_running_stat(name: &str) -> bool {
    name.ends_with("running_mean") || name.ends_with("running_var")
}

/// Every float tensor of `model`, in module order.
///
/// BatchNorm's running statistics keep their latest update aside until the next forward pass;
/// `valid()` folds it in first, so the values collected are the current ones.
pub fn collect<M: Module>(model: &M) -> Vec<NamedTensor> {
    let mut c = Collector { path: Vec::new(), out: Vec::new() };
    model.valid().visit(&mut c);
    c.out
}

struct Applier<'a> {
    path: Vec<String>,
    tensors: &'a HashMap<String, NamedTensor>,
    errors: Vec<String>,
    applied: usize,
}

impl ModuleMapper for Applier<'_> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let name = self.path.join(".");
        let (id, tensor, mapper) = param.consume();
        let Some(t) = self.tensors.get(&name) else {
            self.errors.push(format!("{name} is missing"));
            return Param::from_mapped_value(id, tensor, mapper);
        };
        if t.shape != tensor.dims().to_vec() {
            self.errors.push(format!("{name} has shape {:?}, the model expects {:?}", t.shape, tensor.dims()));
            return Param::from_mapped_value(id, tensor, mapper);
        }
        let require_grad = tensor.is_require_grad();
        let mut new = Tensor::<D>::from_data(TensorData::new(t.values.clone(), t.shape.clone()), &tensor.device());
        if require_grad {
            new = new.require_grad();
        }
        self.applied += 1;
        Param::from_mapped_value(id, new, mapper)
    }
}

/// Loads `tensors` into `model` by name. Every tensor of the model must be present with its
/// shape; extra tensors are an error too (a checkpoint of another architecture).
pub fn apply<M: Module>(model: M, tensors: &[NamedTensor]) -> Result<M> {
    let by_name: HashMap<String, NamedTensor> = tensors.iter().map(|t| (t.name.clone(), t.clone())).collect();
    let mut a = Applier { path: Vec::new(), tensors: &by_name, errors: Vec::new(), applied: 0 };
    let model = model.map(&mut a);
    if a.applied != by_name.len() && a.errors.is_empty() {
        let known: std::collections::HashSet<String> = collect(&model).into_iter().map(|t| t.name).collect();
        let extra: Vec<&String> = by_name.keys().filter(|k| !known.contains(*k)).take(3).collect();
        a.errors.push(format!("unexpected tensors such as {extra:?}"));
    }
    if !a.errors.is_empty() {
        let n = a.errors.len();
        bail!(
            "weights do not fit this model ({n} problems, e.g. {}) — was it saved with another model.arch?",
            a.errors[..n.min(3)].join("; ")
        );
    }
    Ok(model)
}
