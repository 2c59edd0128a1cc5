//! The GPU pool: a host's GPUs grouped by type, handed out whole to workers in the order of a
//! model's `[[gpu]]` list (RunPod's "GPU types as an ordered priority list"), and taken back
//! when a worker exits. NVLink/PCIe topology is not considered: a worker gets the lowest free
//! ids of its type.

use crate::actuator::DevicePool;
use protocol::GpuTable;

/// The GPUs a worker was given: their ids (as `CUDA_VISIBLE_DEVICES` names them) and the type
/// whose settings the worker runs with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GpuGrant {
    /// The GPU type (a GPU table name); `None` for untyped GPUs given to a model that lists
    /// no types.
    pub gpu_type: Option<String>,
    /// The GPU ids, lowest first.
    pub ids: Vec<String>,
    /// The group they came from (and go back to).
    group: usize,
}

/// A host's GPUs by type. Untyped GPUs (a plain `SLUICE_GPUS=0,1`) serve any model: one with a
/// type list gets them as its first type.
#[derive(Debug, Default)]
pub struct GpuPool {
    groups: Vec<(Option<String>, DevicePool)>,
}

impl GpuPool {
    /// From a `SLUICE_GPUS` value: `0,1,2` (untyped) or `H100-80GB:0,1;L40S:2,3` (typed
    /// groups, `;`-separated; a group without `TYPE:` is untyped).
    pub fn parse(spec: &str) -> Self {
        let mut pool = GpuPool::default();
        for group in spec.split(';').map(str::trim).filter(|g| !g.is_empty()) {
            let (gpu_type, ids) = match group.split_once(':') {
                Some((t, ids)) => (Some(t.trim().to_string()), ids),
                None => (None, group),
            };
            pool.add(gpu_type, list(ids));
        }
        pool
    }

    /// From `nvidia-smi --query-gpu=index,name --format=csv,noheader` output, each GPU typed by
    /// the GPU table ([`GpuTable::identify`]); GPUs the table does not know are untyped.
    pub fn from_nvidia_smi(csv: &str, table: Option<&GpuTable>) -> Self {
        let mut pool = GpuPool::default();
        for line in csv.lines() {
            let Some((index, name)) = line.split_once(',') else {
                continue;
            };
            let gpu_type = table
                .and_then(|t| t.identify(name.trim()))
                .map(|g| g.name.clone());
            pool.add(gpu_type, list(index));
        }
        pool
    }

    /// The host's GPUs as `nvidia-smi` lists them, typed by `table`; empty where there is no
    /// `nvidia-smi` (or it fails: no driver, no GPU).
    pub fn detect(table: Option<&GpuTable>) -> Self {
        nvidia_smi()
            .map(|csv| Self::from_nvidia_smi(&csv, table))
            .unwrap_or_default()
    }

    fn add(&mut self, gpu_type: Option<String>, ids: Vec<String>) {
        let group = match self.groups.iter().position(|(t, _)| *t == gpu_type) {
            Some(g) => g,
            None => {
                self.groups.push((gpu_type, DevicePool::default()));
                self.groups.len() - 1
            }
        };
        self.groups[group].1.give(ids);
    }

    /// GPUs for one worker, all or nothing. `types`: the model's `[[gpu]]` list as (type, GPUs
    /// per worker), in preference order; the first type with enough free GPUs wins, then
    /// untyped GPUs as the first type. A model that lists no types takes `untyped` GPUs of any
    /// group, untyped first. `None`: no choice has enough free GPUs.
    pub fn take(&mut self, types: &[(String, u32)], untyped: u32) -> Option<GpuGrant> {
        let untyped_group = self.groups.iter().position(|(t, _)| t.is_none());
        let mut tries: Vec<(usize, Option<String>, u32)> = Vec::new();
        for (t, n) in types {
            if let Some(g) = self
                .groups
                .iter()
                .position(|(gt, _)| gt.as_ref() == Some(t))
            {
                tries.push((g, Some(t.clone()), *n));
            }
        }
        match (types.first(), untyped_group) {
            (Some((t, n)), Some(g)) => tries.push((g, Some(t.clone()), *n)),
            (None, _) => {
                let mut order: Vec<usize> = untyped_group.into_iter().collect();
                order.extend((0..self.groups.len()).filter(|&g| Some(g) != untyped_group));
                tries.extend(
                    order
                        .into_iter()
                        .map(|g| (g, self.groups[g].0.clone(), untyped)),
                );
            }
            _ => {}
        }
        tries.into_iter().find_map(|(group, gpu_type, n)| {
            let ids = self.groups[group].1.take(n as usize)?;
            Some(GpuGrant {
                gpu_type,
                ids,
                group,
            })
        })
    }

    /// Take back a worker's GPUs.
    pub fn give(&mut self, grant: GpuGrant) {
        if let Some((_, pool)) = self.groups.get_mut(grant.group) {
            pool.give(grant.ids);
        }
    }
}

/// `nvidia-smi --query-gpu=index,name --format=csv,noheader` (`0, NVIDIA H100 80GB HBM3` per
/// line), or `None` where there is no `nvidia-smi` or it fails (no driver, no GPU).
pub fn nvidia_smi() -> Option<String> {
    let out = std::process::Command::new("nvidia-smi")
        .args(["--query-gpu=index,name", "--format=csv,noheader"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The ids of a `CUDA_VISIBLE_DEVICES`-style list ("0, 1").
fn list(ids: &str) -> Vec<String> {
    ids.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn types(list: &[(&str, u32)]) -> Vec<(String, u32)> {
        list.iter().map(|(t, n)| (t.to_string(), *n)).collect()
    }

    #[test]
    fn falls_back_down_the_type_list_and_gets_gpus_back() {
        let mut pool = GpuPool::parse("H100-80GB:0,1; L40S:2,3,4,5");
        let want = types(&[("H100-80GB", 2), ("L40S", 4), ("RTX4090", 1)]);
        let first = pool.take(&want, 0).unwrap();
        assert_eq!(first.gpu_type.as_deref(), Some("H100-80GB"));
        assert_eq!(first.ids, ["0", "1"]);
        // H100s taken: the next worker gets the second type, with that type's GPU count.
        let second = pool.take(&want, 0).unwrap();
        assert_eq!(second.gpu_type.as_deref(), Some("L40S"));
        assert_eq!(second.ids, ["2", "3", "4", "5"]);
        // Nothing left of any listed type (no RTX4090 here).
        assert_eq!(pool.take(&want, 0), None);
        pool.give(first);
        let third = pool.take(&want, 0).unwrap();
        assert_eq!(
            (third.gpu_type.as_deref(), third.ids.len()),
            (Some("H100-80GB"), 2)
        );
    }

    #[test]
    fn untyped_gpus_serve_as_the_first_type_or_any_model() {
        let mut pool = GpuPool::parse("0,1,2");
        let want = types(&[("H100-80GB", 2)]);
        let g = pool.take(&want, 0).unwrap();
        assert_eq!(
            (g.gpu_type.as_deref(), g.ids.clone()),
            (Some("H100-80GB"), vec!["0".to_string(), "1".to_string()])
        );
        assert_eq!(
            pool.take(&want, 0),
            None,
            "one untyped GPU left, two wanted"
        );
        let any = pool.take(&[], 1).unwrap();
        assert_eq!((any.gpu_type, any.ids), (None, vec!["2".to_string()]));
        // A model with no type list takes typed GPUs too, reporting their type.
        let mut typed = GpuPool::parse("L40S:0");
        assert_eq!(
            typed.take(&[], 1).unwrap().gpu_type.as_deref(),
            Some("L40S")
        );
    }

    #[test]
    fn nvidia_smi_output_is_typed_by_the_table() {
        let table: GpuTable = toml::from_str(
            r#"
source = "test"
[[gpu]]
name = "H100-80GB"
memory_gib = 79.6
bandwidth_gb_per_sec = 3350
flex_price_per_sec = 0.00116
active_price_per_sec = 0.00093
nvidia_smi_names = ["H100 80GB"]
"#,
        )
        .unwrap();
        let csv = "0, NVIDIA H100 80GB HBM3\n1, NVIDIA H100 80GB HBM3\n2, Tesla T4\n";
        let mut pool = GpuPool::from_nvidia_smi(csv, Some(&table));
        let g = pool.take(&types(&[("H100-80GB", 2)]), 0).unwrap();
        assert_eq!(g.ids, ["0", "1"]);
        assert_eq!(pool.take(&[], 1).unwrap().ids, ["2"], "the T4 is untyped");
    }
}
