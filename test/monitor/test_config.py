"""The budget monitor's configuration: validation, mappings, the shipped file, camera sections."""

import dataclasses
import math
from pathlib import Path

from edge_infer_ros.monitor.config import BudgetConfig
import pytest
import yaml

CONFIG_FILE = Path(__file__).resolve().parents[2] / 'config' / 'budget.yaml'


@pytest.mark.parametrize('changes, reason', [
    ({'deadline_ms': 0.0}, 'deadline_ms must be a finite number > 0'),
    ({'deadline_ms': math.inf}, 'deadline_ms must be a finite number > 0'),
    ({'ingest_ms': -1.0}, 'budget_ms.ingest must be a finite number > 0'),
    ({'transport_ms': math.nan}, 'budget_ms.transport must be a finite number > 0'),
    ({'slack_ms': -0.5}, 'budget_ms.slack must be a finite number >= 0'),
    ({'stage_budgets_ms': {'detector': 0.0}}, 'budget_ms.detector must be a finite'),
    ({'stage_budgets_ms': {'ingest': 3.0}}, "stage name 'ingest' is reserved"),
    ({'stage_budgets_ms': {'my.stage': 3.0}}, 'not a valid parameter name'),
    ({'window_size': 0}, 'window_size must be an integer >= 1'),
    ({'window_size': 2.5}, 'window_size must be an integer >= 1'),
    ({'window_max_age_s': -1.0}, 'window_max_age_s must be a finite number >= 0'),
    ({'warn_percentile': 0.0}, r'warn_percentile must be in \(0, 100\]'),
    ({'warn_percentile': 100.5}, r'warn_percentile must be in \(0, 100\]'),
    ({'miss_rate_error': 1.5}, r'miss_rate_error must be a fraction in \[0, 1\]'),
    ({'miss_rate_error': -0.1}, r'miss_rate_error must be a fraction in \[0, 1\]'),
    ({'stale_timeout_s': 0.0}, 'stale_timeout_s must be a finite number > 0'),
    ({'min_samples': -1}, 'min_samples must be an integer >= 0'),
    ({'min_samples': 301}, r'min_samples \(301\) > window_size \(300\)'),
    ({'diagnostics_period_s': 0.0}, 'diagnostics_period_s must be a finite number > 0'),
    ({'deadline_ms': True}, 'deadline_ms must be a finite number > 0'),
])
def test_validate_reasons(changes, reason):
    """Each invalid field is rejected with a reason that names it."""
    with pytest.raises(ValueError, match=reason):
        dataclasses.replace(BudgetConfig(), **changes).validate()


def test_validate_lists_every_problem():
    """All problems are reported at once, not one per attempt."""
    with pytest.raises(ValueError) as error:
        BudgetConfig(deadline_ms=-1.0, window_size=0).validate()
    assert 'deadline_ms' in str(error.value) and 'window_size' in str(error.value)


def test_defaults_are_valid_and_consistent():
    """The default table adds up to its 45 ms deadline."""
    config = BudgetConfig()
    assert config.validate() is config
    assert config.consistency_warnings() == []
    assert config.stage_budgets_ms == {'preprocess': 4.0, 'detector': 14.0, 'nms': 5.0,
                                       'action': 6.0}


def test_consistency_warnings_when_budgets_do_not_add_up():
    """Budgets above or below the deadline are pointed out, with the sum."""
    over = BudgetConfig(deadline_ms=40.0).consistency_warnings()
    assert len(over) == 1 and 'budgets sum to 45.000 ms' in over[0]
    assert 'missed with every stage within budget' in over[0]
    under = BudgetConfig(deadline_ms=50.0).consistency_warnings()
    assert len(under) == 1 and '5.000 ms of the deadline is budgeted to nothing' in under[0]


def test_to_mapping_from_mapping_round_trip():
    """The node declares to_mapping() and rebuilds the same config from the parameters."""
    config = BudgetConfig(stage_budgets_ms={'resize': 2.0, 'detector': 20.0},
                          deadline_ms=50.0, window_size=120, warn_percentile=99.0,
                          min_samples=10, hardware_id='jetson0')
    mapping = config.to_mapping()
    assert mapping['budget_ms.resize'] == 2.0
    assert mapping['budget_ms.slack'] == 5.0
    assert mapping['window_size'] == 120 and isinstance(mapping['window_size'], int)
    assert BudgetConfig.from_mapping(mapping) == config
    assert BudgetConfig.from_mapping(BudgetConfig().to_mapping()) == BudgetConfig()


def test_from_mapping_flat_names():
    """Flat ROS parameter names set the fields; named stages replace the default set."""
    config = BudgetConfig.from_mapping({
        'deadline_ms': 30.0, 'budget_ms.preprocess': 3.0, 'budget_ms.detector': 10.0,
        'budget_ms.ingest': 5.0, 'budget_ms.transport': 4.0, 'budget_ms.slack': 8.0,
        'window_size': 100, 'min_samples': 3.0})
    assert config.deadline_ms == 30.0
    assert config.stage_budgets_ms == {'preprocess': 3.0, 'detector': 10.0}
    assert (config.ingest_ms, config.transport_ms, config.slack_ms) == (5.0, 4.0, 8.0)
    assert config.window_size == 100 and config.min_samples == 3
    assert config.warn_percentile == 95.0  # not given: default


def test_from_mapping_nested_equals_flat():
    """The nested YAML form and the flat parameter form mean the same."""
    nested = {'deadline_ms': 45.0, 'budget_ms': {'detector': 20.0, 'ingest': 6.0}}
    flat = {'deadline_ms': 45.0, 'budget_ms.detector': 20.0, 'budget_ms.ingest': 6.0}
    assert BudgetConfig.from_mapping(nested) == BudgetConfig.from_mapping(flat)


def test_from_mapping_base_updates_one_parameter():
    """A parameter update changes one field of the current config and keeps the rest."""
    base = BudgetConfig(window_size=50)
    config = BudgetConfig.from_mapping({'budget_ms.detector': 18.0}, base=base)
    assert config.stage_budgets_ms['detector'] == 18.0
    assert config.stage_budgets_ms['nms'] == 5.0
    assert config.window_size == 50
    assert base.stage_budgets_ms['detector'] == 14.0  # base untouched


def test_from_mapping_rejects_bad_values():
    """Wrong types, duplicates and (when strict) unknown names are refused."""
    with pytest.raises(ValueError, match='window_size must be an integer'):
        BudgetConfig.from_mapping({'window_size': 10.5})
    with pytest.raises(ValueError, match='deadline_ms must be a number'):
        BudgetConfig.from_mapping({'deadline_ms': '45'})
    with pytest.raises(ValueError, match='deadline_ms must be a number'):
        BudgetConfig.from_mapping({'deadline_ms': True})
    with pytest.raises(ValueError, match='given twice'):
        BudgetConfig.from_mapping({'budget_ms.nms': 5.0, 'budget_ms': {'nms': 4.0}})
    with pytest.raises(ValueError, match='warn_percentile'):
        BudgetConfig.from_mapping({'warn_percentile': 120.0})
    assert BudgetConfig.from_mapping({'use_sim_time': False}) == BudgetConfig()
    with pytest.raises(ValueError, match='unknown budget parameters: use_sim_time'):
        BudgetConfig.from_mapping({'use_sim_time': False}, strict=True)


def test_config_file_matches_the_defaults():
    """config/budget.yaml loads as ROS parameters of budget_monitor and equals the defaults."""
    document = yaml.safe_load(CONFIG_FILE.read_text())
    parameters = document['/**/budget_monitor']['ros__parameters']
    config = BudgetConfig.from_mapping(parameters, strict=True)
    assert config == BudgetConfig()
    assert config.consistency_warnings() == []
    assert parameters['budget_ms'] == {'ingest': 6.0, 'transport': 5.0, 'preprocess': 4.0,
                                       'detector': 14.0, 'nms': 5.0, 'action': 6.0,
                                       'slack': 5.0}
    flat = set(BudgetConfig().to_mapping())
    file_keys = {k for k in parameters if k != 'budget_ms'}
    file_keys |= {f'budget_ms.{k}' for k in parameters['budget_ms']}
    assert file_keys == flat
    assert BudgetConfig.from_mapping(document) == config  # wrapper accepted too
