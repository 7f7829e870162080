//! Wiring the kernels into burn: a backend extension trait implemented for `Flex` and `NdArray`
//! (the kernels, on each one's tensor storage) and for `Autodiff<B, C>` (recording a backward
//! step that calls the gradient kernels), and the model-facing functions that use it on those
//! CPU devices and burn's own ops everywhere else.

// burn-ndarray is deprecated upstream; selfsup still offers `--backend ndarray`.
#![allow(deprecated)]

use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::ops::ModuleOps;
use burn::backend::tensor::FloatTensor;
use std::borrow::Cow;

use burn::backend::{Autodiff, Backend, DType, Dispatch, Flex, NdArray, TensorMetadata, backend_extension};
use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, PaddingConfig2d};
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Bytes, Shape, TensorData};
use burn_flex::{FlexTensor, Layout};
use burn_ndarray::NdArrayTensor;

use super::batch_norm::{self, BnShape};
use super::conv::{self, ConvGeometry};
use super::gelu as gelu_kernel;

/// The project's own CPU operations.
#[backend_extension(Flex, NdArray, Autodiff)]
pub trait CpuKernels: Backend {
    /// 2-D convolution without bias: square `stride` and `pad`, no dilation, one group.
    fn fast_conv2d(x: FloatTensor<Self>, weight: FloatTensor<Self>, stride: usize, pad: usize) -> FloatTensor<Self>;
    /// The input gradient of [`fast_conv2d`](Self::fast_conv2d) for an input of `h` × `w`.
    fn fast_conv2d_input_grad(
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        h: usize,
        w: usize,
        stride: usize,
        pad: usize,
    ) -> FloatTensor<Self>;
    /// The weight gradient of [`fast_conv2d`](Self::fast_conv2d) for a `kh` × `kw` kernel.
    fn fast_conv2d_weight_grad(
        x: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        kh: usize,
        kw: usize,
        stride: usize,
        pad: usize,
    ) -> FloatTensor<Self>;
    /// Training-mode batch norm over `[n, c, …]`, then ReLU when `relu`: `(y, mean, var)`.
    /// With `sync`, the statistics are over every rank's images ([`crate::dist::sync_bn`]).
    fn fast_batch_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        eps: f64,
        relu: bool,
        sync: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
    /// The gradients `(dx, dgamma, dbeta)` of [`fast_batch_norm`](Self::fast_batch_norm).
    #[allow(clippy::too_many_arguments)]
    fn fast_batch_norm_backward(
        x: FloatTensor<Self>,
        y: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        var: FloatTensor<Self>,
        eps: f64,
        relu: bool,
        sync: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
    /// The exact GELU, `x·Φ(x)`, elementwise.
    fn fast_gelu(x: FloatTensor<Self>) -> FloatTensor<Self>;
    /// The input gradient of [`fast_gelu`](Self::fast_gelu) at `x` for the output gradient `grad`.
    fn fast_gelu_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self>;
}

/// The CPU backends' tensors as the kernels see them: contiguous f32 values and a shape.
trait CpuTensor: Sized {
    fn dims(&self) -> Vec<usize>;
    fn is_f32(&self) -> bool;
    /// The values in row-major order (borrowed when already contiguous f32).
    fn values(&self) -> Cow<'_, [f32]>;
    fn from_values(values: Vec<f32>, shape: &[usize]) -> Self;
}

impl CpuTensor for FlexTensor {
    fn dims(&self) -> Vec<usize> {
        self.shape().to_vec()
    }
    fn is_f32(&self) -> bool {
        self.dtype() == DType::F32
    }
    fn values(&self) -> Cow<'_, [f32]> {
        match self.as_slice::<f32>() {
            Some(s) if self.is_contiguous() => Cow::Borrowed(s),
            _ => Cow::Owned(self.to_contiguous().as_slice::<f32>().expect("contiguous f32").to_vec()),
        }
    }
    fn from_values(values: Vec<f32>, shape: &[usize]) -> Self {
        FlexTensor::new(Bytes::from_elems(values), Layout::contiguous(Shape::from(shape.to_vec())), DType::F32)
    }
}

impl CpuTensor for NdArrayTensor {
    fn dims(&self) -> Vec<usize> {
        TensorMetadata::shape(self).to_vec()
    }
    fn is_f32(&self) -> bool {
        matches!(self, NdArrayTensor::F32(_))
    }
    fn values(&self) -> Cow<'_, [f32]> {
        match self {
            NdArrayTensor::F32(storage) => {
                let view = storage.view();
                match view.to_slice() {
                    Some(s) => Cow::Borrowed(s),
                    None => Cow::Owned(view.iter().copied().collect()),
                }
            }
            // Float tensors are f32 or f64 on ndarray; the models are f32 throughout.
            NdArrayTensor::F64(storage) => Cow::Owned(storage.view().iter().map(|&v| v as f32).collect()),
            other => unreachable!("an ndarray float tensor of {:?}", other.dtype()),
        }
    }
    fn from_values(values: Vec<f32>, shape: &[usize]) -> Self {
        NdArrayTensor::from_data(TensorData::new(values, shape.to_vec()))
    }
}

fn dims4<T: CpuTensor>(t: &T) -> [usize; 4] {
    let s = t.dims();
    [s[0], s[1], s[2], s[3]]
}

/// `[n, c, spatial]` of a `[n, c, …]` tensor.
fn bn_shape<T: CpuTensor>(t: &T) -> BnShape {
    let s = t.dims();
    BnShape { n: s[0], c: s[1], spatial: s.iter().skip(2).product() }
}

fn options(stride: usize, pad: usize) -> ConvOptions<2> {
    ConvOptions::new([stride, stride], [pad, pad], [1, 1], 1)
}

/// The kernels on one CPU backend's tensors (shared by the `Flex` and `NdArray` impls).
fn conv_forward<T: CpuTensor>(x: T, weight: T, stride: usize, pad: usize) -> T {
    let [n, c_in, h, w] = dims4(&x);
    let [c_out, _, kh, kw] = dims4(&weight);
    let g = ConvGeometry { n, c_in, h, w, c_out, kh, kw, stride, pad };
    let y = conv::forward(&x.values(), &weight.values(), None, &g);
    T::from_values(y, &[n, c_out, g.h_out(), g.w_out()])
}

fn conv_input_grad<T: CpuTensor>(weight: T, grad: T, h: usize, w: usize, stride: usize, pad: usize) -> T {
    let [n, c_out, _, _] = dims4(&grad);
    let [_, c_in, kh, kw] = dims4(&weight);
    let g = ConvGeometry { n, c_in, h, w, c_out, kh, kw, stride, pad };
    T::from_values(conv::input_grad(&weight.values(), &grad.values(), &g), &[n, c_in, h, w])
}

fn conv_weight_grad<T: CpuTensor>(x: T, grad: T, kh: usize, kw: usize, stride: usize, pad: usize) -> T {
    let [n, c_in, h, w] = dims4(&x);
    let [_, c_out, _, _] = dims4(&grad);
    let g = ConvGeometry { n, c_in, h, w, c_out, kh, kw, stride, pad };
    T::from_values(conv::weight_grad(&x.values(), &grad.values(), &g), &[c_out, c_in, kh, kw])
}

/// The reduction over the ranks of a synchronized batch norm, when `sync`.
fn reducer(sync: bool) -> batch_norm::Reduce<'static> {
    sync.then_some(&crate::dist::sync_bn::reduce as &dyn Fn(&mut [f64]))
}

fn bn_forward<T: CpuTensor>(x: T, gamma: T, beta: T, eps: f64, relu: bool, sync: bool) -> (T, T, T) {
    let s = bn_shape(&x);
    let (y, mean, var) =
        batch_norm::forward(&x.values(), &gamma.values(), &beta.values(), eps, relu, &s, reducer(sync));
    (T::from_values(y, &x.dims()), T::from_values(mean, &[s.c]), T::from_values(var, &[s.c]))
}

#[allow(clippy::too_many_arguments)]
fn bn_backward<T: CpuTensor>(
    x: T,
    y: T,
    grad: T,
    gamma: T,
    mean: T,
    var: T,
    eps: f64,
    relu: bool,
    sync: bool,
) -> (T, T, T) {
    let s = bn_shape(&x);
    let (dx, dg, db) = batch_norm::backward(
        &x.values(),
        &y.values(),
        &grad.values(),
        &gamma.values(),
        &mean.values(),
        &var.values(),
        eps,
        relu,
        &s,
        reducer(sync),
    );
    (T::from_values(dx, &x.dims()), T::from_values(dg, &[s.c]), T::from_values(db, &[s.c]))
}

fn gelu_forward<T: CpuTensor>(x: T) -> T {
    T::from_values(gelu_kernel::forward(&x.values()), &x.dims())
}

fn gelu_backward<T: CpuTensor>(x: T, grad: T) -> T {
    T::from_values(gelu_kernel::backward(&x.values(), &grad.values()), &x.dims())
}

/// Implements the extension for a CPU backend through the functions above; a convolution or
/// GELU on non-f32 tensors falls back to the backend's own.
macro_rules! cpu_kernels_for {
    ($backend:ty, $tensor:ty) => {
        impl CpuKernels for $backend {
            fn fast_conv2d(x: $tensor, weight: $tensor, stride: usize, pad: usize) -> $tensor {
                if !x.is_f32() || !weight.is_f32() {
                    return <$backend as ModuleOps<$backend>>::conv2d(x, weight, None, options(stride, pad));
                }
                conv_forward(x, weight, stride, pad)
            }
            fn fast_conv2d_input_grad(
                weight: $tensor,
                grad: $tensor,
                h: usize,
                w: usize,
                stride: usize,
                pad: usize,
            ) -> $tensor {
                conv_input_grad(weight, grad, h, w, stride, pad)
            }
            fn fast_conv2d_weight_grad(
                x: $tensor,
                grad: $tensor,
                kh: usize,
                kw: usize,
                stride: usize,
                pad: usize,
            ) -> $tensor {
                conv_weight_grad(x, grad, kh, kw, stride, pad)
            }
            fn fast_batch_norm(
                x: $tensor,
                gamma: $tensor,
                beta: $tensor,
                eps: f64,
                relu: bool,
                sync: bool,
            ) -> ($tensor, $tensor, $tensor) {
                bn_forward(x, gamma, beta, eps, relu, sync)
            }
            fn fast_batch_norm_backward(
                x: $tensor,
                y: $tensor,
                grad: $tensor,
                gamma: $tensor,
                mean: $tensor,
                var: $tensor,
                eps: f64,
                relu: bool,
                sync: bool,
            ) -> ($tensor, $tensor, $tensor) {
                bn_backward(x, y, grad, gamma, mean, var, eps, relu, sync)
            }
            fn fast_gelu(x: $tensor) -> $tensor {
                if !x.is_f32() {
                    return <$backend as burn::backend::ops::ActivationOps<$backend>>::gelu(x);
                }
                gelu_forward(x)
            }
            fn fast_gelu_backward(x: $tensor, grad: $tensor) -> $tensor {
                if !x.is_f32() || !grad.is_f32() {
                    return <$backend as burn::backend::ops::ActivationOps<$backend>>::gelu_backward(x, grad);
                }
                gelu_backward(x, grad)
            }
        }
    };
}

cpu_kernels_for!(Flex, FlexTensor);
cpu_kernels_for!(NdArray, NdArrayTensor);

#[derive(Debug)]
struct FastBatchNormBackward;

impl<B: CpuKernels> Backward<B, 3> for FastBatchNormBackward {
    /// Input and gamma (checkpointed), the output, batch mean and variance, epsilon, ReLU, sync.
    type State = (NodeId, NodeId, FloatTensor<B>, FloatTensor<B>, FloatTensor<B>, f64, bool, bool);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let [node_x, node_gamma, node_beta] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (x_state, gamma_state, y, mean, var, eps, relu, sync) = ops.state;
        let x = checkpointer.retrieve_node_output::<FloatTensor<B>>(x_state);
        let gamma = checkpointer.retrieve_node_output::<FloatTensor<B>>(gamma_state);
        let (dx, dgamma, dbeta) = B::fast_batch_norm_backward(x, y, grad, gamma, mean, var, eps, relu, sync);
        if let Some(node) = node_x {
            grads.register::<B>(node.id, dx);
        }
        if let Some(node) = node_gamma {
            grads.register::<B>(node.id, dgamma);
        }
        if let Some(node) = node_beta {
            grads.register::<B>(node.id, dbeta);
        }
    }
}

#[derive(Debug)]
struct FastGeluBackward;

impl<B: CpuKernels> Backward<B, 1> for FastGeluBackward {
    /// The input (checkpointed).
    type State = NodeId;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let [node_x] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let x = checkpointer.retrieve_node_output::<FloatTensor<B>>(ops.state);
        if let Some(node) = node_x {
            grads.register::<B>(node.id, B::fast_gelu_backward(x, grad));
        }
    }
}

#[derive(Debug)]
struct FastConv2dBackward;

impl<B: CpuKernels> Backward<B, 2> for FastConv2dBackward {
    /// Input and weight (checkpointed), stride, padding, input height and width, kernel size.
    type State = (NodeId, NodeId, usize, usize, [usize; 2], [usize; 2]);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let [node_x, node_w] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (x_state, w_state, stride, pad, [h, w], [kh, kw]) = ops.state;
        let x = checkpointer.retrieve_node_output::<FloatTensor<B>>(x_state);
        let weight = checkpointer.retrieve_node_output::<FloatTensor<B>>(w_state);
        if let Some(node) = node_x {
            grads.register::<B>(node.id, B::fast_conv2d_input_grad(weight, grad.clone(), h, w, stride, pad));
        }
        if let Some(node) = node_w {
            grads.register::<B>(node.id, B::fast_conv2d_weight_grad(x, grad, kh, kw, stride, pad));
        }
    }
}

impl<B: CpuKernels, C: CheckpointStrategy> CpuKernels for Autodiff<B, C> {
    fn fast_batch_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        eps: f64,
        relu: bool,
        sync: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let plain = <FloatTensor<Self>>::new;
        let parents = [x.node(), gamma.node(), beta.node()];
        let forward = |x: FloatTensor<Self>, gamma: FloatTensor<Self>, beta: FloatTensor<Self>| {
            B::fast_batch_norm(x.into_primitive(), gamma.into_primitive(), beta.into_primitive(), eps, relu, sync)
        };
        match FastBatchNormBackward.prepare::<C>(parents).compute_bound().stateful() {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                let gamma_state = prep.checkpoint(&gamma);
                let (y, mean, var) = forward(x, gamma, beta);
                let state = (x_state, gamma_state, y.clone(), mean.clone(), var.clone(), eps, relu, sync);
                (prep.finish(state, y), plain(mean), plain(var))
            }
            OpsKind::UnTracked(prep) => {
                let (y, mean, var) = forward(x, gamma, beta);
                (prep.finish(y), plain(mean), plain(var))
            }
        }
    }

    fn fast_batch_norm_backward(
        x: FloatTensor<Self>,
        y: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        var: FloatTensor<Self>,
        eps: f64,
        relu: bool,
        sync: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let (dx, dg, db) = B::fast_batch_norm_backward(
            x.into_primitive(),
            y.into_primitive(),
            grad.into_primitive(),
            gamma.into_primitive(),
            mean.into_primitive(),
            var.into_primitive(),
            eps,
            relu,
            sync,
        );
        let plain = <FloatTensor<Self>>::new;
        (plain(dx), plain(dg), plain(db))
    }

    fn fast_conv2d(x: FloatTensor<Self>, weight: FloatTensor<Self>, stride: usize, pad: usize) -> FloatTensor<Self> {
        let xs = x.shape();
        let ws = weight.shape();
        match FastConv2dBackward.prepare::<C>([x.node(), weight.node()]).compute_bound().stateful() {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                let w_state = prep.checkpoint(&weight);
                let out = B::fast_conv2d(x.into_primitive(), weight.into_primitive(), stride, pad);
                prep.finish((x_state, w_state, stride, pad, [xs[2], xs[3]], [ws[2], ws[3]]), out)
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(B::fast_conv2d(x.into_primitive(), weight.into_primitive(), stride, pad))
            }
        }
    }

    fn fast_gelu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        match FastGeluBackward.prepare::<C>([x.node()]).compute_bound().stateful() {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                prep.finish(x_state, B::fast_gelu(x.into_primitive()))
            }
            OpsKind::UnTracked(prep) => prep.finish(B::fast_gelu(x.into_primitive())),
        }
    }

    // The gradient kernels are only called inside backward passes, on the inner backend; on an
    // autodiff tensor they compute without recording anything.
    fn fast_gelu_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        <FloatTensor<Self>>::new(B::fast_gelu_backward(x.into_primitive(), grad.into_primitive()))
    }

    fn fast_conv2d_input_grad(
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        h: usize,
        w: usize,
        stride: usize,
        pad: usize,
    ) -> FloatTensor<Self> {
        <FloatTensor<Self>>::new(B::fast_conv2d_input_grad(
            weight.into_primitive(),
            grad.into_primitive(),
            h,
            w,
            stride,
            pad,
        ))
    }

    fn fast_conv2d_weight_grad(
        x: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        kh: usize,
        kw: usize,
        stride: usize,
        pad: usize,
    ) -> FloatTensor<Self> {
        <FloatTensor<Self>>::new(B::fast_conv2d_weight_grad(
            x.into_primitive(),
            grad.into_primitive(),
            kh,
            kw,
            stride,
            pad,
        ))
    }
}

/// Whether tensors on `device` run on a CPU backend the kernels cover: flex or ndarray (with
/// or without autodiff).
pub fn is_cpu(device: &burn::tensor::Device) -> bool {
    let inner = device.clone().inner();
    inner == burn::tensor::Device::flex() || inner == burn::tensor::Device::ndarray()
}

/// Whether the kernels run for tensors on `device`: a CPU backend they cover ([`is_cpu`]), and
/// not turned off ([`super::enabled`]).
pub fn serve(device: &burn::tensor::Device) -> bool {
    is_cpu(device) && super::enabled()
}

/// A bias-free 2-D convolution: the project's kernels on flex and ndarray, burn's `conv2d`
/// elsewhere.
pub fn conv2d(x: burn::Tensor<4>, weight: burn::Tensor<4>, stride: usize, pad: usize) -> burn::Tensor<4> {
    if serve(&x.device()) {
        burn::Tensor::from_dispatch(<Dispatch as CpuKernels>::fast_conv2d(
            x.into_dispatch(),
            weight.into_dispatch(),
            stride,
            pad,
        ))
    } else {
        burn::tensor::module::conv2d(x, weight, None, options(stride, pad))
    }
}

/// The exact GELU: the project's kernel on flex and ndarray, burn's `gelu` elsewhere.
pub fn gelu<const D: usize>(x: burn::Tensor<D>) -> burn::Tensor<D> {
    if serve(&x.device()) {
        burn::Tensor::from_dispatch(<Dispatch as CpuKernels>::fast_gelu(x.into_dispatch()))
    } else {
        burn::tensor::activation::gelu(x)
    }
}

thread_local! {
    /// Inside [`no_grad_training`]: whether the running statistics are updated.
    static NO_GRAD_TRAINING: std::cell::Cell<Option<bool>> = const { std::cell::Cell::new(None) };
}

/// Runs `f` with batch norm normalizing by each batch's own statistics as in training, on a
/// model without autodiff (`Module::valid`, whose layers otherwise use the running statistics).
/// `update_running`: whether the running statistics move, as in a training forward pass. Two
/// uses: gradient caching's first pass (`false`: its activations are not kept; the second pass
/// forwards the same views with autodiff, computing the same statistics and updating the
/// running ones, so they move once per micro-batch, not twice), and an EMA teacher's forward
/// pass (`true`: a momentum encoder runs in training mode, without gradients).
pub fn no_grad_training<T>(update_running: bool, f: impl FnOnce() -> T) -> T {
    let before = NO_GRAD_TRAINING.replace(Some(update_running));
    let out = f();
    NO_GRAD_TRAINING.set(before);
    out
}

/// Runs a `BatchNorm` module (then ReLU when `relu`): one fused kernel each way on the CPU in
/// training mode, updating the running statistics exactly as burn's `BatchNorm` does; burn's
/// own layers everywhere else (inference mode, other backends). Inside a synchronized batch
/// norm's scope ([`crate::dist::sync_bn`]) training statistics are the global batch's: the
/// kernel's on the CPU, burn's operations with a differentiable all-reduce elsewhere. Inside
/// [`no_grad_training`]: training statistics without autodiff.
pub fn batch_norm<const D: usize>(bn: &BatchNorm, x: burn::Tensor<D>, relu: bool) -> burn::Tensor<D> {
    let device = x.device();
    let no_grad = NO_GRAD_TRAINING.get();
    let forward_only = no_grad.is_some();
    let update = no_grad != Some(false);
    let training = forward_only || device.is_autodiff() && bn.training.is_enabled();
    let synced = crate::dist::sync_bn::current();
    if !(serve(&device) && training) {
        if synced.is_some() && training {
            return crate::dist::sync_bn::batch_norm(bn, x, relu, update);
        }
        let y = if forward_only {
            let r = burn::tensor::module::batch_norm_train(x, bn.gamma.val(), bn.beta.val(), bn.epsilon);
            if update {
                update_running_stats(bn, r.mean, r.variance);
            }
            r.output
        } else {
            bn.forward(x)
        };
        return if relu { burn::tensor::activation::relu(y) } else { y };
    }
    let (y, mean, var) = <Dispatch as CpuKernels>::fast_batch_norm(
        x.into_dispatch(),
        bn.gamma.val().into_dispatch(),
        bn.beta.val().into_dispatch(),
        bn.epsilon,
        relu,
        synced.is_some(),
    );
    if update {
        update_running_stats(bn, burn::Tensor::<1>::from_dispatch(mean), burn::Tensor::<1>::from_dispatch(var));
    }
    burn::Tensor::from_dispatch(y)
}

/// Moves `bn`'s running statistics towards a training batch's `mean` and (biased) `var`, as
/// burn's `BatchNorm` does.
pub fn update_running_stats(bn: &BatchNorm, mean: burn::Tensor<1>, var: burn::Tensor<1>) {
    let (m, device) = (bn.momentum, mean.device());
    let running = |old: burn::Tensor<1>, new: burn::Tensor<1>| {
        old.to_device(&device).mul_scalar(1.0 - m).add(new.detach().mul_scalar(m)).detach()
    };
    bn.running_mean.update(running(bn.running_mean.value_sync(), mean));
    bn.running_var.update(running(bn.running_var.value_sync(), var));
}

/// Runs a `Conv2d` module: through [`conv2d`] when its shape is one the kernels cover (no bias,
/// equal strides, symmetric equal padding, no dilation, one group), else its own forward.
pub fn forward_conv(conv: &Conv2d, x: burn::Tensor<4>) -> burn::Tensor<4> {
    let pad = match conv.padding {
        PaddingConfig2d::Explicit(t, l, b, r) if t == l && l == b && b == r => Some(t),
        PaddingConfig2d::Valid => Some(0),
        _ => None,
    };
    match pad {
        Some(pad)
            if conv.bias.is_none()
                && conv.stride[0] == conv.stride[1]
                && conv.dilation == [1, 1]
                && conv.groups == 1 =>
        {
            conv2d(x, conv.weight.val(), conv.stride[0], pad)
        }
        _ => conv.forward(x),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::prelude::*;
    use burn::tensor::Distribution;

    /// The CPU devices the kernels serve, with autodiff.
    fn cpu_devices() -> [burn::tensor::Device; 2] {
        [burn::tensor::Device::flex().autodiff(), burn::tensor::Device::ndarray().autodiff()]
    }

    /// The kernels against burn's own conv2d on flex and ndarray: output and both gradients.
    #[test]
    fn matches_burns_conv2d_output_and_gradients() {
        for device in cpu_devices() {
            conv2d_matches_burn(&device);
        }
    }

    fn conv2d_matches_burn(device: &burn::tensor::Device) {
        let device = device.clone();
        device.seed(11);
        for (n, c_in, h, w, c_out, k, stride, pad) in [
            (2, 3, 9, 7, 5, 3, 1, 1),
            (3, 5, 8, 8, 6, 3, 2, 1),
            (1, 7, 5, 6, 9, 3, 2, 1),
            (5, 9, 4, 4, 10, 3, 2, 1),
            (2, 4, 6, 6, 3, 1, 1, 0),
            (2, 3, 11, 10, 4, 7, 2, 3),
            (1, 1, 1, 1, 1, 1, 1, 0),
        ] {
            let x0 = Tensor::<4>::random([n, c_in, h, w], Distribution::Normal(0.0, 1.0), &device);
            let w0 = Tensor::<4>::random([c_out, c_in, k, k], Distribution::Normal(0.0, 0.3), &device);
            let run = |fast: bool| {
                let x = x0.clone().detach().require_grad();
                let wt = w0.clone().detach().require_grad();
                let y = if fast {
                    Tensor::from_dispatch(<Dispatch as CpuKernels>::fast_conv2d(
                        x.clone().into_dispatch(),
                        wt.clone().into_dispatch(),
                        stride,
                        pad,
                    ))
                } else {
                    burn::tensor::module::conv2d(x.clone(), wt.clone(), None, options(stride, pad))
                };
                let r = Tensor::<4>::ones(y.dims(), &device).mul_scalar(0.5) + y.clone().detach();
                let grads = (y.clone() * r).sum().backward();
                let v = |t: Tensor<4>| t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
                (v(y.inner()), v(x.grad(&grads).unwrap()), v(wt.grad(&grads).unwrap()))
            };
            let (a, b) = (run(true), run(false));
            for (name, p, q) in [("output", &a.0, &b.0), ("input grad", &a.1, &b.1), ("weight grad", &a.2, &b.2)] {
                let scale = q.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
                assert_eq!(p.len(), q.len());
                for (i, (u, v)) in p.iter().zip(q).enumerate() {
                    assert!(
                        (u - v).abs() <= 1e-4 * scale,
                        "{name} {:?} at {i}: {u} vs {v}",
                        (n, c_in, h, w, c_out, k, stride, pad)
                    );
                }
            }
        }
    }

    /// `gelu` (the kernel, with autodiff) on flex and ndarray against the exact GELU in f64:
    /// output and input gradient, on a non-contiguous (transposed) input too. (Not against
    /// burn's own on ndarray: its gradient is the tanh approximation's, 0.4 % off at x = −1.)
    #[test]
    fn gelu_output_and_gradient_match_f64() {
        use super::super::gelu::tests::{gelu_f64, gelu_grad_f64};
        for device in cpu_devices() {
            device.seed(5);
            let x0 = Tensor::<2>::random([37, 300], Distribution::Normal(0.0, 2.0), &device);
            for transposed in [false, true] {
                let x = x0.clone().detach().require_grad();
                let input = if transposed { x.clone().transpose() } else { x.clone() };
                let y = gelu(input);
                let r = y.clone().detach().mul_scalar(0.3).add_scalar(0.7);
                let grads = (y.clone() * r.clone()).sum().backward();
                let v = |t: Tensor<2>| t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
                let xs = v(if transposed { x0.clone().inner().transpose() } else { x0.clone().inner() });
                let (ys, rs) = (v(y.inner()), v(r.inner()));
                let dx = v(if transposed { x.grad(&grads).unwrap().transpose() } else { x.grad(&grads).unwrap() });
                for i in 0..xs.len() {
                    let (x, r) = (f64::from(xs[i]), f64::from(rs[i]));
                    let (want_y, want_dx) = (gelu_f64(x), r * gelu_grad_f64(x));
                    let (tol_y, tol_dx) = (2.5e-7 * x.abs().max(1.0), 2e-6 * want_dx.abs().max(1.0));
                    assert!(
                        (f64::from(ys[i]) - want_y).abs() <= tol_y,
                        "gelu({x}) {transposed}: {} vs {want_y}",
                        ys[i]
                    );
                    assert!(
                        (f64::from(dx[i]) - want_dx).abs() <= tol_dx,
                        "dx at {x} {transposed}: {} vs {want_dx}",
                        dx[i]
                    );
                }
            }
        }
    }

    /// The fused batch norm (+ReLU) against burn's `BatchNorm` (+`relu`) in training mode:
    /// output, the three gradients, and the running statistics it leaves.
    #[test]
    fn matches_burns_batch_norm_output_gradients_and_running_stats() {
        for device in cpu_devices() {
            batch_norm_matches_burn(&device);
        }
    }

    fn batch_norm_matches_burn(device: &burn::tensor::Device) {
        use burn::nn::BatchNormConfig;
        let device = device.clone();
        device.seed(5);
        for (shape, relu) in [([4, 3, 5, 5], true), ([6, 8, 1, 1], true), ([3, 5, 7, 2], false), ([1, 2, 3, 3], true)] {
            let c = shape[1];
            let x0 = Tensor::<4>::random(shape, Distribution::Normal(0.3, 1.5), &device);
            let run = |fast: bool| {
                let bn = BatchNormConfig::new(c).init(&device);
                let bn = bn.map(&mut RandomizeAffine);
                let x = x0.clone().detach().require_grad();
                let x4 = x.clone();
                let y = if fast {
                    super::batch_norm(&bn, x4, relu)
                } else {
                    let y = bn.forward(x4);
                    if relu { burn::tensor::activation::relu(y) } else { y }
                };
                let r = y.clone().detach().sin() + 0.25;
                let grads = (y.clone() * r).sum().backward();
                let v = |t: Tensor<1>| t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
                let flat = |t: Tensor<4>| v(t.flatten(0, 3));
                let gx = x.grad(&grads).unwrap().flatten(0, 3);
                (
                    flat(y.inner()),
                    v(gx),
                    v(bn.gamma.val().grad(&grads).unwrap()),
                    v(bn.beta.val().grad(&grads).unwrap()),
                    v(bn.running_mean.value_sync().inner()),
                    v(bn.running_var.value_sync().inner()),
                )
            };
            let (a, b) = (run(true), run(false));
            for (name, p, q) in [
                ("output", &a.0, &b.0),
                ("dx", &a.1, &b.1),
                ("dgamma", &a.2, &b.2),
                ("dbeta", &a.3, &b.3),
                ("running mean", &a.4, &b.4),
                ("running var", &a.5, &b.5),
            ] {
                let scale = q.iter().fold(1e-2f32, |m, v| m.max(v.abs()));
                for (i, (u, v)) in p.iter().zip(q.iter()).enumerate() {
                    assert!((u - v).abs() <= 2e-4 * scale, "{name} {shape:?} relu={relu} at {i}: {u} vs {v}");
                }
            }
        }
    }

    /// Gives BatchNorm non-trivial gamma and beta (deterministic), so their gradients matter.
    struct RandomizeAffine;
    impl burn::module::ModuleMapper for RandomizeAffine {
        fn map_float<const D: usize>(
            &mut self,
            param: burn::module::Param<Tensor<D>>,
        ) -> burn::module::Param<Tensor<D>> {
            let (id, t, mapper) = param.consume();
            let n = t.shape().num_elements();
            let vals: Vec<f32> = (0..n).map(|i| 0.5 + (i as f32 * 0.7).sin() * 0.4).collect();
            let new = Tensor::<D>::from_data(TensorData::new(vals, t.shape()), &t.device()).require_grad();
            burn::module::Param::from_mapped_value(id, new, mapper)
        }
    }
}
