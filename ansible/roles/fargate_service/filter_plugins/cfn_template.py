"""Reads what a CloudFormation template declares, for the fargate_service role.

CloudFormation YAML uses short-form tags (!Sub, !GetAtt, ...) that Ansible's from_yaml refuses;
this loader accepts any tag and keeps only the plain structure.
"""

import yaml

NAMED_IAM = {
    "AWS::IAM::Role": "RoleName",
    "AWS::IAM::User": "UserName",
    "AWS::IAM::Group": "GroupName",
    "AWS::IAM::ManagedPolicy": "ManagedPolicyName",
    "AWS::IAM::InstanceProfile": "InstanceProfileName",
}


class _AnyTagLoader(yaml.SafeLoader):  # pylint: disable=too-many-ancestors
    """A SafeLoader that reads every unknown tag as the plain node under it."""


def _any_tag(loader, _suffix, node):
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node)
    return loader.construct_scalar(node)


_AnyTagLoader.add_multi_constructor("!", _any_tag)


def cfn_template_summary(text):
    """Returns {parameters: [names], capabilities: [...]} for a template's text."""
    doc = yaml.load(text, Loader=_AnyTagLoader)  # nosec B506 - SafeLoader subclass
    if not isinstance(doc, dict):
        raise ValueError("the template is not a YAML/JSON mapping")
    resources = doc.get("Resources") or {}
    capabilities = []
    iam = [r for r in resources.values() if isinstance(r, dict) and str(r.get("Type", "")).startswith("AWS::IAM::")]
    if iam:
        named = any(NAMED_IAM.get(r["Type"]) in (r.get("Properties") or {}) for r in iam)
        capabilities.append("CAPABILITY_NAMED_IAM" if named else "CAPABILITY_IAM")
    if doc.get("Transform"):
        capabilities.append("CAPABILITY_AUTO_EXPAND")
    return {"parameters": sorted((doc.get("Parameters") or {}).keys()), "capabilities": capabilities}


class FilterModule:  # pylint: disable=too-few-public-methods
    """Ansible filter plugin entry point."""

    def filters(self):
        return {"cfn_template_summary": cfn_template_summary}
