//! A differentiable all-reduce, for synchronized batch norm on any backend: the forward sums a
//! (small) tensor over the ranks of the current [`super::sync_bn`] scope, through the host; the
//! backward sums the incoming gradients the same way. (On rank `r`, `y = Σ_q x_q`; the loss's
//! gradient with respect to `y` is the sum of every rank's share, and `∂y/∂x_r = 1`, so
//! `∂L/∂x_r = Σ_q (∂L/∂y)_q`.) Outside a scope it is the identity.
//!
//! It is a burn backend extension, implemented for flex, ndarray and the cubecl backends (wgpu,
//! cuda) through their generic host transfers, and for autodiff over them.

// burn-ndarray is deprecated upstream; selfsup still offers `--backend ndarray`.
#![allow(deprecated)]

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, unary};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Cube, Dispatch, Flex, NdArray, TensorMetadata, backend_extension};
use burn::tensor::TensorData;

/// The all-reduce as a tensor operation.
#[backend_extension(Flex, NdArray, Cube, Autodiff)]
pub trait AllReduceOps: Backend {
    /// Element-wise sum over the ranks of the current synchronized batch norm scope.
    fn all_reduce_sum(x: FloatTensor<Self>) -> FloatTensor<Self>;
}

/// The sum over the ranks through the host (the tensors are per-channel statistics: small).
fn through_host<B: Backend>(x: FloatTensor<B>) -> FloatTensor<B> {
    let Some(world) = super::sync_bn::current() else { return x };
    let device = x.device();
    let data = pollster::block_on(B::float_into_data(x)).expect("reading batch-norm statistics from the device");
    let shape = data.shape().clone();
    let mut values = data.convert::<f32>().try_to_vec::<f32>().expect("f32 statistics");
    world.all_reduce_sum_f32(&mut values);
    B::float_from_data(TensorData::new(values, shape), &device)
}

macro_rules! through_host_for {
    ($($backend:ty),*) => {$(
        impl AllReduceOps for $backend {
            fn all_reduce_sum(x: FloatTensor<Self>) -> FloatTensor<Self> {
                through_host::<Self>(x)
            }
        }
    )*};
}

through_host_for!(Flex, NdArray, Cube);

#[derive(Debug)]
struct AllReduceBackward;

impl<B: AllReduceOps> Backward<B, 1> for AllReduceBackward {
    type State = ();

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        unary::<B, _>(ops.parents, ops.node, grads, |grad| B::all_reduce_sum(grad));
    }
}

impl<B: AllReduceOps, C: CheckpointStrategy> AllReduceOps for Autodiff<B, C> {
    fn all_reduce_sum(x: FloatTensor<Self>) -> FloatTensor<Self> {
        AllReduceBackward.prepare::<C>([x.node()]).compute_bound().stateless(B::all_reduce_sum(x.into_primitive()))
    }
}

/// [`AllReduceOps::all_reduce_sum`] on a tensor of any device.
pub fn all_reduce_sum(x: burn::Tensor<1>) -> burn::Tensor<1> {
    burn::Tensor::from_dispatch(<Dispatch as AllReduceOps>::all_reduce_sum(x.into_dispatch()))
}
