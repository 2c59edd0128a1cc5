//! GGUF re-quantization with candle: candle (under mistral.rs) has SIMD kernels for Q8_0,
//! Q4_0 and the K-quants but none for Q4_1, so serving a Q4_1 file in another format is much
//! faster on CPU. Output is deterministic (sorted keys and tensors), so its checksum is stable.

use crate::{io, progress, Result, WeightsError};
use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::Device;
use protocol::config::WeightFormat;
use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::Path;

fn target(format: WeightFormat) -> Option<GgmlDType> {
    match format {
        WeightFormat::Original => None,
        WeightFormat::Q8_0 => Some(GgmlDType::Q8_0),
        WeightFormat::Q4_0 => Some(GgmlDType::Q4_0),
        WeightFormat::Q4K => Some(GgmlDType::Q4K),
        WeightFormat::F16 => Some(GgmlDType::F16),
        WeightFormat::F32 => Some(GgmlDType::F32),
    }
}

/// llama.cpp's `general.file_type` codes for the formats we write.
fn file_type(format: WeightFormat) -> Option<u32> {
    match format {
        WeightFormat::F32 => Some(0),
        WeightFormat::F16 => Some(1),
        WeightFormat::Q4_0 => Some(2),
        WeightFormat::Q8_0 => Some(7),
        WeightFormat::Q4K => Some(15),
        WeightFormat::Original => None,
    }
}

/// The dtype one tensor gets: 1-D tensors (norms, biases) stay as they are; a matrix whose
/// rows do not split into the target's blocks (K-quants need 256) falls back to Q8_0.
fn dtype_for(current: GgmlDType, dims: &[usize], want: GgmlDType) -> GgmlDType {
    if dims.len() < 2 || current == want {
        return current;
    }
    let row = *dims.last().unwrap_or(&0);
    if row.is_multiple_of(want.block_size()) {
        want
    } else if row.is_multiple_of(GgmlDType::Q8_0.block_size()) {
        GgmlDType::Q8_0
    } else {
        current
    }
}

/// The tokenizer's vocabulary arrays, left out of derived files: workers load the tokenizer
/// from the sidecar written at pull time, and parsing ~100k strings of metadata was ~15% of
/// a worker's load time (measured with `examples/load_bench.rs`).
const TOKENIZER_ARRAYS: &[&str] = &[
    "tokenizer.ggml.tokens",
    "tokenizer.ggml.merges",
    "tokenizer.ggml.token_type",
    "tokenizer.ggml.scores",
];

/// Write `src` re-quantized to `format` at `dest`, without the tokenizer's arrays (see
/// `TOKENIZER_ARRAYS`; the chat template and special-token ids stay).
pub fn convert(src: &Path, dest: &Path, format: WeightFormat) -> Result<()> {
    let gguf_err = |detail: candle_core::Error| WeightsError::Gguf {
        path: src.to_path_buf(),
        detail: detail.to_string(),
    };
    let want = target(format).ok_or_else(|| WeightsError::Gguf {
        path: src.to_path_buf(),
        detail: "nothing to convert to `original`".into(),
    })?;
    let mut reader =
        BufReader::new(File::open(src).map_err(io(format!("opening {}", src.display())))?);
    let content = gguf_file::Content::read(&mut reader).map_err(gguf_err)?;
    let mut names: Vec<&String> = content.tensor_infos.keys().collect();
    names.sort();
    let pb = progress::bar(names.len() as u64, "converting", false);
    let mut tensors: Vec<(String, QTensor)> = Vec::with_capacity(names.len());
    for name in names {
        let t = content
            .tensor(&mut reader, name, &Device::Cpu)
            .map_err(gguf_err)?;
        let to = dtype_for(t.dtype(), t.shape().dims(), want);
        let t = if to == t.dtype() {
            t
        } else {
            let f = t.dequantize(&Device::Cpu).map_err(gguf_err)?;
            QTensor::quantize(&f, to).map_err(gguf_err)?
        };
        tensors.push((name.clone(), t));
        pb.inc(1);
    }
    pb.finish_and_clear();

    let mut metadata: Vec<(&str, Value)> = content
        .metadata
        .iter()
        .filter(|(k, _)| !TOKENIZER_ARRAYS.contains(&k.as_str()))
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();
    if let Some(ft) = file_type(format) {
        metadata.retain(|(k, _)| *k != "general.file_type");
        metadata.push(("general.file_type", Value::U32(ft)));
    }
    metadata.sort_by(|a, b| a.0.cmp(b.0));
    let md: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (*k, v)).collect();
    let ts: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, t)| (k.as_str(), t)).collect();
    let file = File::create(dest).map_err(io(format!("creating {}", dest.display())))?;
    let mut w = BufWriter::new(file);
    gguf_file::write(&mut w, &md, &ts).map_err(|e| WeightsError::Gguf {
        path: dest.to_path_buf(),
        detail: e.to_string(),
    })?;
    let file = w.into_inner().map_err(|e| WeightsError::Io {
        context: format!("writing {}", dest.display()),
        source: e.into_error(),
    })?;
    file.sync_all()
        .map_err(io(format!("syncing {}", dest.display())))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Tensor;

    #[test]
    fn k_quants_fall_back_to_q8_0_on_narrow_rows() {
        assert_eq!(
            dtype_for(GgmlDType::Q4_1, &[1536, 576], GgmlDType::Q4K),
            GgmlDType::Q8_0
        );
        assert_eq!(
            dtype_for(GgmlDType::Q4_1, &[576, 1536], GgmlDType::Q4K),
            GgmlDType::Q4K
        );
        assert_eq!(
            dtype_for(GgmlDType::F32, &[576], GgmlDType::Q8_0),
            GgmlDType::F32
        );
    }

    #[test]
    fn round_trip_preserves_metadata_and_values() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let (src, dest) = (dir.join("in.gguf"), dir.join("out.gguf"));
        let data: Vec<f32> = (0..64 * 64)
            .map(|i| ((i % 97) as f32 - 48.0) / 50.0)
            .collect();
        let w = Tensor::from_vec(data, (64, 64), &Device::Cpu).unwrap();
        let q41 = QTensor::quantize(&w, GgmlDType::Q4_1).unwrap();
        let norm = QTensor::quantize(
            &Tensor::ones(64, candle_core::DType::F32, &Device::Cpu).unwrap(),
            GgmlDType::F32,
        )
        .unwrap();
        let name = Value::String("tiny".into());
        let tokens = Value::Array(vec![Value::String("a".into()), Value::String("b".into())]);
        let eos = Value::U32(1);
        let mut f = File::create(&src).unwrap();
        gguf_file::write(
            &mut f,
            &[
                ("general.name", &name),
                ("tokenizer.ggml.tokens", &tokens),
                ("tokenizer.ggml.eos_token_id", &eos),
            ],
            &[("w", &q41), ("norm", &norm)],
        )
        .unwrap();
        drop(f);

        convert(&src, &dest, WeightFormat::Q8_0).unwrap();
        let mut r = BufReader::new(File::open(&dest).unwrap());
        let c = gguf_file::Content::read(&mut r).unwrap();
        assert_eq!(c.metadata["general.name"].to_string().unwrap(), "tiny");
        assert_eq!(c.metadata["general.file_type"].to_u32().unwrap(), 7);
        assert!(
            !c.metadata.contains_key("tokenizer.ggml.tokens"),
            "the vocabulary lives in the tokenizer sidecar"
        );
        assert_eq!(
            c.metadata["tokenizer.ggml.eos_token_id"].to_u32().unwrap(),
            1
        );
        let out = c.tensor(&mut r, "w", &Device::Cpu).unwrap();
        assert_eq!(out.dtype(), GgmlDType::Q8_0);
        assert_eq!(
            c.tensor(&mut r, "norm", &Device::Cpu).unwrap().dtype(),
            GgmlDType::F32
        );
        // Q8_0 of the Q4_1 values is within one Q8 step of them.
        let a = q41
            .dequantize(&Device::Cpu)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let b = out
            .dequantize(&Device::Cpu)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let worst = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        assert!(worst < 0.02, "max abs error {worst}");
        // Deterministic output.
        let again = dir.join("again.gguf");
        convert(&src, &again, WeightFormat::Q8_0).unwrap();
        assert_eq!(
            std::fs::read(&dest).unwrap(),
            std::fs::read(&again).unwrap()
        );
    }
}
