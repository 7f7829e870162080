//! `selfsup export --format onnx`: the encoder as an ONNX model (opset 17), built by walking the
//! burn modules — convolutions, batch norms in inference form (`BatchNormalization` with the
//! running statistics), ReLU, max-pool, residual additions, global average pooling, and with
//! the head its linear layers. The batch dimension is symbolic (`batch`); the input is the
//! normalized `[batch, 3, size, size]` view and the output `features` (`[batch, d]`, and
//! `projection` with the head). Metadata describes the input and its normalization.

use anyhow::{Result, bail};
use burn::nn::conv::Conv2d;
use burn::nn::pool::MaxPool2d;
use burn::nn::{BatchNorm, Linear, PaddingConfig2d};
use burn::prelude::*;
use prost::Message;

use super::onnx_proto::*;
use crate::model::Activation;
use crate::model::convnet::ConvBnRelu;
use crate::model::resnet::Block;
use crate::model::{Backbone, Encoder};

/// The operator set written (ONNX 1.12; IR version 8).
pub const OPSET: i64 = 17;
const IR_VERSION: i64 = 8;

/// The graph being built: its nodes and weights.
#[derive(Default)]
struct Builder {
    nodes: Vec<NodeProto>,
    weights: Vec<TensorProto>,
    count: usize,
}

fn values<const D: usize>(t: Tensor<D>) -> (Vec<usize>, Vec<f32>) {
    let dims = t.dims().to_vec();
    (dims, t.into_data().convert::<f32>().try_to_vec::<f32>().expect("float tensor"))
}

fn ints(name: &str, v: &[usize]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        ints: v.iter().map(|&x| x as i64).collect(),
        r#type: ATTR_INTS,
        ..Default::default()
    }
}

fn int(name: &str, v: i64) -> AttributeProto {
    AttributeProto { name: name.into(), i: Some(v), r#type: ATTR_INT, ..Default::default() }
}

fn float(name: &str, v: f32) -> AttributeProto {
    AttributeProto { name: name.into(), f: Some(v), r#type: ATTR_FLOAT, ..Default::default() }
}

/// ONNX `pads` (begin of each axis, then end) of a burn padding.
fn pads(p: &PaddingConfig2d, what: &str) -> Result<[usize; 4]> {
    match *p {
        PaddingConfig2d::Explicit(top, left, bottom, right) => Ok([top, left, bottom, right]),
        PaddingConfig2d::Valid => Ok([0; 4]),
        PaddingConfig2d::Same => bail!("{what}: \"same\" padding is not exported"),
    }
}

fn tensor_info(name: &str, dims: &[Option<usize>]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| match d {
            Some(n) => Dimension { dim_value: Some(*n as i64), dim_param: None },
            None => Dimension { dim_value: None, dim_param: Some("batch".into()) },
        })
        .collect();
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TypeProtoTensor { elem_type: FLOAT, shape: Some(TensorShapeProto { dim }) }),
        }),
    }
}

impl Builder {
    /// Adds a node of one output; returns the output's name (`out` or a fresh one).
    fn node(&mut self, op: &str, inputs: Vec<String>, attribute: Vec<AttributeProto>, out: Option<&str>) -> String {
        self.count += 1;
        let output = out.map_or_else(|| format!("{}_{}", op.to_lowercase(), self.count), str::to_string);
        self.nodes.push(NodeProto {
            input: inputs,
            output: vec![output.clone()],
            name: format!("{op}_{}", self.count),
            op_type: op.into(),
            attribute,
        });
        output
    }

    /// Adds a weight (named by its selfsup path); returns its name.
    fn weight<const D: usize>(&mut self, name: &str, t: Tensor<D>) -> String {
        let (dims, v) = values(t);
        self.weights.push(TensorProto {
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: FLOAT,
            name: name.into(),
            raw_data: v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        });
        name.into()
    }

    fn conv(&mut self, x: String, c: &Conv2d, name: &str) -> Result<String> {
        if c.groups != 1 || c.dilation != [1, 1] {
            bail!("{name}: grouped or dilated convolutions are not exported");
        }
        let mut inputs = vec![x, self.weight(&format!("{name}.weight"), c.weight.val())];
        if let Some(b) = &c.bias {
            inputs.push(self.weight(&format!("{name}.bias"), b.val()));
        }
        let attrs = vec![
            ints("kernel_shape", &c.kernel_size),
            ints("strides", &c.stride),
            ints("pads", &pads(&c.padding, name)?),
            ints("dilations", &c.dilation),
            int("group", 1),
        ];
        Ok(self.node("Conv", inputs, attrs, None))
    }

    fn batch_norm(&mut self, x: String, bn: &BatchNorm, name: &str) -> String {
        self.batch_norm_to(x, bn, name, None)
    }

    /// Batch norm whose output is named `out` (the graph's output).
    fn batch_norm_named(&mut self, x: String, bn: &BatchNorm, name: &str, out: &str) -> String {
        self.batch_norm_to(x, bn, name, Some(out))
    }

    fn batch_norm_to(&mut self, x: String, bn: &BatchNorm, name: &str, out: Option<&str>) -> String {
        let inputs = vec![
            x,
            self.weight(&format!("{name}.gamma"), bn.gamma.val()),
            self.weight(&format!("{name}.beta"), bn.beta.val()),
            self.weight(&format!("{name}.running_mean"), bn.running_mean.value()),
            self.weight(&format!("{name}.running_var"), bn.running_var.value()),
        ];
        self.node("BatchNormalization", inputs, vec![float("epsilon", bn.epsilon as f32)], out)
    }

    fn relu(&mut self, x: String) -> String {
        self.node("Relu", vec![x], Vec::new(), None)
    }

    /// A scalar constant (an initializer named `name`).
    fn scalar(&mut self, name: &str, value: f32) -> String {
        self.weights.push(TensorProto {
            dims: Vec::new(),
            data_type: FLOAT,
            name: name.into(),
            raw_data: value.to_le_bytes().to_vec(),
        });
        name.into()
    }

    /// GELU, `x · ½(1 + erf(x/√2))`, in opset-17 operators (`Gelu` itself is opset 20).
    fn gelu(&mut self, x: String, name: &str) -> String {
        let root2 = self.scalar(&format!("{name}.gelu.sqrt2"), std::f32::consts::SQRT_2);
        let one = self.scalar(&format!("{name}.gelu.one"), 1.0);
        let half = self.scalar(&format!("{name}.gelu.half"), 0.5);
        let scaled = self.node("Div", vec![x.clone(), root2], Vec::new(), None);
        let erf = self.node("Erf", vec![scaled], Vec::new(), None);
        let plus = self.node("Add", vec![erf, one], Vec::new(), None);
        let times = self.node("Mul", vec![x, plus], Vec::new(), None);
        self.node("Mul", vec![times, half], Vec::new(), None)
    }

    fn conv_bn_relu(&mut self, x: String, l: &ConvBnRelu, name: &str) -> Result<String> {
        let y = self.conv(x, &l.conv, &format!("{name}.conv"))?;
        let y = self.batch_norm(y, &l.bn, &format!("{name}.bn"));
        Ok(self.relu(y))
    }

    fn max_pool(&mut self, x: String, p: &MaxPool2d) -> Result<String> {
        if p.ceil_mode || p.dilation != [1, 1] {
            bail!("max-pool with ceil mode or dilation is not exported");
        }
        let attrs = vec![
            ints("kernel_shape", &p.kernel_size),
            ints("strides", &p.stride),
            ints("pads", &pads(&p.padding, "max-pool")?),
        ];
        Ok(self.node("MaxPool", vec![x], attrs, None))
    }

    fn block(&mut self, x: String, b: &Block, name: &str) -> Result<String> {
        let identity = match &b.downsample {
            Some(d) => {
                let y = self.conv(x.clone(), &d.conv, &format!("{name}.downsample.conv"))?;
                self.batch_norm(y, &d.bn, &format!("{name}.downsample.bn"))
            }
            None => x.clone(),
        };
        let mut y = x;
        for (i, l) in b.inner.iter().enumerate() {
            y = self.conv_bn_relu(y, l, &format!("{name}.inner.{i}"))?;
        }
        let y = self.conv(y, &b.last, &format!("{name}.last"))?;
        let y = self.batch_norm(y, &b.last_bn, &format!("{name}.last_bn"));
        let y = self.node("Add", vec![y, identity], Vec::new(), None);
        Ok(self.relu(y))
    }

    /// `[n, c, h, w]` → `[n, c]`.
    fn global_avg_pool(&mut self, x: String, out: &str) -> String {
        let y = self.node("GlobalAveragePool", vec![x], Vec::new(), None);
        self.node("Flatten", vec![y], vec![int("axis", 1)], Some(out))
    }

    fn linear(&mut self, x: String, l: &Linear, name: &str, out: Option<&str>) -> String {
        let w = self.weight(&format!("{name}.weight"), l.weight.val()); // [in, out]
        match &l.bias {
            Some(b) => {
                let b = self.weight(&format!("{name}.bias"), b.val());
                self.node("Gemm", vec![x, w, b], Vec::new(), out)
            }
            None => self.node("MatMul", vec![x, w], Vec::new(), out),
        }
    }
}

/// The ONNX model of `encoder` (backbone, and the projection head with `with_head`) for
/// `size` × `size` inputs, with `metadata` as its metadata properties.
pub fn encode(encoder: &Encoder, size: usize, with_head: bool, metadata: &[(String, String)]) -> Result<Vec<u8>> {
    let mut g = Builder::default();
    let x = "input".to_string();
    let (features, dim) = match &encoder.backbone {
        Backbone::ConvNet(c) => {
            let mut y = x;
            for (i, l) in c.layers.iter().enumerate() {
                y = g.conv_bn_relu(y, l, &format!("backbone.ConvNet.layers.{i}"))?;
            }
            (g.global_avg_pool(y, "features"), c.dim())
        }
        Backbone::ResNet(r) => {
            let mut y = g.conv_bn_relu(x, &r.stem.conv, "backbone.ResNet.stem.conv")?;
            if let Some(p) = &r.stem.pool {
                y = g.max_pool(y, p)?;
            }
            for (i, b) in r.blocks.iter().enumerate() {
                y = g.block(y, b, &format!("backbone.ResNet.blocks.{i}"))?;
            }
            (g.global_avg_pool(y, "features"), r.dim())
        }
    };
    let mut outputs = vec![tensor_info("features", &[None, Some(dim)])];
    if with_head {
        let head = &encoder.head;
        let mut y = features;
        for (i, h) in head.hidden.iter().enumerate() {
            let name = format!("head.hidden.{i}");
            let mut z = g.linear(y, &h.linear, &format!("{name}.linear"), None);
            if let Some(bn) = &h.bn {
                z = g.batch_norm(z, bn, &format!("{name}.bn"));
            }
            y = match head.activation {
                Activation::Relu => g.relu(z),
                Activation::Gelu => g.gelu(z, &name),
            };
        }
        let out_dim = head.out.weight.dims()[1];
        match &head.out_bn {
            Some(bn) => {
                let z = g.linear(y, &head.out, "head.out", None);
                g.batch_norm_named(z, bn, "head.out_bn", "projection");
            }
            None => {
                g.linear(y, &head.out, "head.out", Some("projection"));
            }
        }
        outputs.push(tensor_info("projection", &[None, Some(out_dim)]));
    }
    let model = ModelProto {
        ir_version: IR_VERSION,
        producer_name: "selfsup".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        doc_string: "selfsup encoder: input is the normalized view (see the metadata); output `features` is the backbone's representation".into(),
        graph: Some(GraphProto {
            node: g.nodes,
            name: "selfsup_encoder".into(),
            initializer: g.weights,
            input: vec![tensor_info("input", &[None, Some(3), Some(size), Some(size)])],
            output: outputs,
        }),
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: OPSET }],
        metadata_props: metadata
            .iter()
            .map(|(k, v)| StringStringEntryProto { key: k.clone(), value: v.clone() })
            .collect(),
    };
    Ok(model.encode_to_vec())
}
