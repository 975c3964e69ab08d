"""profile_step.py names each operation of the compiled step with its shape and kind."""

import profile_step

HLO = """HloModule jit_update

%fused_computation.8 (param_0: f32[64,5400], param_1: f32[5400,576]) -> f32[64,576] {
  %param_0 = f32[64,5400]{1,0} parameter(0)
  %param_1 = f32[5400,576]{1,0} parameter(1)
  ROOT %dot.1 = f32[64,576]{1,0} dot(%param_0, %param_1), lhs_contracting_dims={1}
}

%fused_computation.13 (param_0.1: f32[1,600,64]) -> f32[1,64] {
  %param_0.1 = f32[1,600,64]{2,1,0} parameter(0)
  %constant.1 = f32[] constant(0)
  ROOT %reduce.1 = f32[1,64]{1,0} reduce(%param_0.1, %constant.1), dimensions={1}
}

ENTRY %main.1 (a: f32[64,5400], b: f32[5400,576], c: f32[1,600,64]) -> f32[64,576] {
  %a = f32[64,5400]{1,0} parameter(0)
  %ynn_fusion.8 = f32[64,576]{1,0} fusion(%a, %b), kind=kCustom, calls=%fused_computation.8
  %ynn_fusion.13 = f32[1,64]{1,0} fusion(%c), kind=kCustom, calls=%fused_computation.13
  %concatenate.7 = f32[1,600,28,28,9]{4,3,2,1,0} concatenate(%s0, %s1), dimensions={4}
  %copy_bitcast_fusion.6 = f32[64,470400]{1,0} fusion(%x), kind=kLoop, calls=%fused_computation.13
  ROOT %dot.2 = f32[64,576]{1,0} dot(%a, %b), lhs_contracting_dims={1}
}
"""


def test_instructions_are_named_with_shape_and_kind():
  ops = profile_step.instructions(HLO)
  assert ops['ynn_fusion.8'] == ('f32[64,576]', 'matmul')
  # A YNNPACK fusion without a dot is a reduction, not a matmul.
  assert ops['ynn_fusion.13'] == ('f32[1,64]', 'elementwise or reduction fusion')
  assert ops['concatenate.7'] == ('f32[1,600,28,28,9]', 'concatenate (patches)')
  assert ops['copy_bitcast_fusion.6'][1] == 'copy or transpose'
  assert ops['dot.2'] == ('f32[64,576]', 'matmul')
  assert ops['dot.1'] == ('f32[64,576]', 'matmul')
  assert ops['param_0'] == ('f32[64,5400]', 'other')
