"""The embedded demo slice of SQuAD v1.1 (CC BY-SA 4.0, see LICENSE here): `squad-slice.json.gz`,
read through `dpr_jax.data.resources.slice_json`; `slice.json` records how it was built."""
