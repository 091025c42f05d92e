//! Shapes and the index layouts that ops hand to kernels.
//!
//! Glossary used in comments across the crate: `[outer, n, inner]` is a
//! tensor viewed around one axis of length `n`; `rows x d` is a tensor viewed
//! as rows of its last axis. Row-major (C order) everywhere.

use anyhow::{bail, Result};

/// Largest rank the broadcasting kernels handle.
pub const MAX_RANK: usize = 6;

pub fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// A tensor viewed around one axis: `[outer, n, inner]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AxisLayout {
    pub outer: usize,
    pub n: usize,
    pub inner: usize,
}

impl AxisLayout {
    /// Layout of `shape` around `axis` (negative counts from the end).
    pub fn new(shape: &[usize], axis: isize) -> Result<Self> {
        let a = normalize_axis(shape.len(), axis)?;
        Ok(AxisLayout {
            outer: numel(&shape[..a]),
            n: shape[a],
            inner: numel(&shape[a + 1..]),
        })
    }
    pub fn lines(&self) -> usize {
        self.outer * self.inner
    }
    pub fn numel(&self) -> usize {
        self.outer * self.n * self.inner
    }
}

pub fn normalize_axis(rank: usize, axis: isize) -> Result<usize> {
    let a = if axis < 0 { axis + rank as isize } else { axis };
    if a < 0 || a as usize >= rank {
        bail!("axis {axis} is out of range for a tensor of rank {rank}");
    }
    Ok(a as usize)
}

/// Shape with `axis` removed.
pub fn reduced_shape(shape: &[usize], axis: isize) -> Result<Vec<usize>> {
    let a = normalize_axis(shape.len(), axis)?;
    let mut s = shape.to_vec();
    s.remove(a);
    Ok(s)
}

fn strides(dims: &[usize]) -> Vec<usize> {
    let mut s = vec![0; dims.len()];
    let mut acc = 1;
    for i in (0..dims.len()).rev() {
        s[i] = acc;
        acc *= dims[i];
    }
    s
}

/// NumPy broadcasting of two shapes: the output shape and, for each input,
/// its strides in the output's index space (0 where it is broadcast).
/// Passed by value to the CUDA kernels, hence `repr(C)` and u32 fields.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Broadcast {
    pub rank: u32,
    pub out_dims: [u32; MAX_RANK],
    pub a_strides: [u32; MAX_RANK],
    pub b_strides: [u32; MAX_RANK],
}

impl Broadcast {
    pub fn new(a: &[usize], b: &[usize]) -> Result<(Self, Vec<usize>)> {
        let rank = a.len().max(b.len()).max(1);
        if rank > MAX_RANK {
            bail!("broadcasting supports rank up to {MAX_RANK}, got shapes {a:?} and {b:?}");
        }
        let pad = |s: &[usize]| {
            let mut p = vec![1; rank - s.len()];
            p.extend_from_slice(s);
            p
        };
        let (pa, pb) = (pad(a), pad(b));
        let mut out = vec![0; rank];
        for i in 0..rank {
            out[i] = match (pa[i], pb[i]) {
                (x, y) if x == y => x,
                (1, y) => y,
                (x, 1) => x,
                _ => bail!("shapes {a:?} and {b:?} cannot be broadcast together"),
            };
        }
        let (sa, sb) = (strides(&pa), strides(&pb));
        let mut l = Broadcast { rank: rank as u32, ..Default::default() };
        for i in 0..rank {
            l.out_dims[i] = out[i] as u32;
            l.a_strides[i] = if pa[i] == 1 { 0 } else { sa[i] as u32 };
            l.b_strides[i] = if pb[i] == 1 { 0 } else { sb[i] as u32 };
        }
        Ok((l, out))
    }

    pub fn out_numel(&self) -> usize {
        self.out_dims[..self.rank as usize].iter().map(|&d| d as usize).product()
    }

    /// How to sum a gradient of the output shape back to input `a` (or `b`).
    pub fn reduce_for(&self, input_b: bool) -> ReduceLayout {
        let st = if input_b { &self.b_strides } else { &self.a_strides };
        let rank = self.rank as usize;
        let out: Vec<usize> = self.out_dims[..rank].iter().map(|&d| d as usize).collect();
        let out_strides = strides(&out);
        let mut r = ReduceLayout { rank: self.rank, ..Default::default() };
        for i in 0..rank {
            // A dimension is summed where the input is broadcast along it.
            let reduced = st[i] == 0 && out[i] > 1;
            r.kept_dims[i] = if reduced { 1 } else { out[i] as u32 };
            r.red_dims[i] = if reduced { out[i] as u32 } else { 1 };
            r.out_strides[i] = out_strides[i] as u32;
        }
        r
    }
}

/// Sum of a broadcast output gradient over the dimensions an input was
/// broadcast along: input element `i` (index over `kept_dims`) collects every
/// output element `i + j` for `j` over `red_dims`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReduceLayout {
    pub rank: u32,
    pub kept_dims: [u32; MAX_RANK],
    pub red_dims: [u32; MAX_RANK],
    pub out_strides: [u32; MAX_RANK],
}

impl ReduceLayout {
    pub fn kept_numel(&self) -> usize {
        self.kept_dims[..self.rank as usize].iter().map(|&d| d as usize).product()
    }
    pub fn red_numel(&self) -> usize {
        self.red_dims[..self.rank as usize].iter().map(|&d| d as usize).product()
    }
    /// Offset in the output of (kept index `i`, reduced index `j`): the two
    /// index sets use disjoint dims, so it is `kept_offset(i) + red_offset(j)`.
    pub fn offset(&self, i: usize, j: usize) -> usize {
        self.kept_offset(i) + self.red_offset(j)
    }
    pub fn kept_offset(&self, i: usize) -> usize {
        Self::decode(i, &self.kept_dims, &self.out_strides, self.rank)
    }
    pub fn red_offset(&self, j: usize) -> usize {
        Self::decode(j, &self.red_dims, &self.out_strides, self.rank)
    }
    fn decode(mut i: usize, dims: &[u32; MAX_RANK], strides: &[u32; MAX_RANK], rank: u32) -> usize {
        let mut off = 0;
        for d in (0..rank as usize).rev() {
            off += (i % dims[d] as usize) * strides[d] as usize;
            i /= dims[d] as usize;
        }
        off
    }
}

impl Broadcast {
    /// Offsets into `a` and `b` of output element `o`.
    pub fn offsets(&self, mut o: usize) -> (usize, usize) {
        let (mut oa, mut ob) = (0, 0);
        for d in (0..self.rank as usize).rev() {
            let dim = self.out_dims[d] as usize;
            let i = o % dim;
            o /= dim;
            oa += i * self.a_strides[d] as usize;
            ob += i * self.b_strides[d] as usize;
        }
        (oa, ob)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcast_bias_over_rows() {
        let (l, out) = Broadcast::new(&[5, 3], &[3]).unwrap();
        assert_eq!(out, vec![5, 3]);
        assert_eq!(l.offsets(4), (4, 1));
        let r = l.reduce_for(true);
        assert_eq!((r.kept_numel(), r.red_numel()), (3, 5));
        // element 2 of the bias collects outputs (j, 2) for every row j
        let offs: Vec<usize> = (0..5).map(|j| r.offset(2, j)).collect();
        assert_eq!(offs, vec![2, 5, 8, 11, 14]);
    }

    #[test]
    fn incompatible_shapes_are_an_error() {
        assert!(Broadcast::new(&[2, 3], &[4]).is_err());
        assert!(AxisLayout::new(&[2, 3], 2).is_err());
        assert_eq!(AxisLayout::new(&[2, 3, 4], -2).unwrap(), AxisLayout { outer: 2, n: 3, inner: 4 });
    }
}
